//! Model repositories in object storage, with Triton's URLs and
//! credentials: `s3://` (AWS or any S3-compatible server; `AWS_*`),
//! `gs://` (`GOOGLE_APPLICATION_CREDENTIALS`) and `as://` (Azure Blob;
//! `AZURE_STORAGE_ACCOUNT` / `AZURE_STORAGE_KEY`), through the `object_store`
//! crate (its signing, its retries). A repository here is a
//! [`kiln_repository::RepositorySource`]: the registry lists, fingerprints
//! and loads from it as from a local folder.
#![forbid(unsafe_code)]

mod store;
mod url;

pub use store::{ObjectRepository, MAX_OBJECTS};
pub use url::StoreUrl;
