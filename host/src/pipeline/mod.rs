//! Pipelines of models inside one request: Triton ensembles
//! (`platform: "ensemble"`), e.g. plugin → TorchScript → plugin, with the
//! intermediate tensors kept in process.

pub mod ensemble;
