//! `kiln check DIR`: validates a repository without serving it. Parses every
//! config.pbtxt, applies the version policy and loads each selected version's
//! TorchScript file on the CPU, then prints one row per model version.
//! `kiln check --tenants FILE` validates a tenants file the way serving
//! would read it.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use kiln_model_config::Placement;
use kiln_ops::{OpProvider, OpResolver};

use crate::backend;
use kiln_repository::layout;

pub struct Row {
    pub model: String,
    pub version: String,
    pub status: &'static str,
    pub detail: String,
}

/// The repository's op plugins as `kiln check` needs them: loaded (on the
/// CPU) the first time a model's `custom_ops` names one.
struct CheckedOpPlugins {
    root: std::path::PathBuf,
    backends: kiln_backend::BackendRegistry,
    loaded: Mutex<HashMap<String, Found>>,
}

/// An op plugin, or why it could not be loaded.
type Found = Result<Arc<dyn OpProvider>, String>;

impl OpResolver for CheckedOpPlugins {
    fn op_plugin(&self, name: &str) -> Result<Arc<dyn OpProvider>, String> {
        let mut loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(found) = loaded.get(name) {
            return found.clone();
        }
        let found = self.load(name);
        loaded.insert(name.to_string(), found.clone());
        found
    }
}

impl CheckedOpPlugins {
    fn load(&self, name: &str) -> Found {
        let dir = self.root.join(name);
        if name.contains(['/', '\\']) || !dir.is_dir() {
            return Err(format!("op plugin '{name}' is not in the repository"));
        }
        let spec = self.backends.read_spec(&dir, None).map_err(|e| e.0)?;
        let version = *spec
            .select_versions(&layout::versions(&dir))
            .last()
            .ok_or_else(|| format!("op plugin '{name}' has no version selected"))?;
        let none: Arc<dyn OpResolver> = Arc::new(kiln_ops::NoOpPlugins);
        let instance = self
            .backends
            .load_instance(&spec, version, Placement::Cpu, &none)
            .map_err(|e| e.to_string())?;
        instance
            .op_provider()
            .ok_or_else(|| format!("model '{name}' is not an op plugin"))
    }
}

pub fn check_repository(root: &Path) -> anyhow::Result<Vec<Row>> {
    let backends = backend::registry();
    let ops: Arc<dyn OpResolver> = Arc::new(CheckedOpPlugins {
        root: root.to_path_buf(),
        backends: backends.clone(),
        loaded: Mutex::default(),
    });
    let mut rows = Vec::new();
    for (name, dir) in layout::model_dirs(root)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", root.display()))?
    {
        let row = |version: String, ok: bool, detail: String| Row {
            model: name.clone(),
            version,
            status: if ok { "OK" } else { "ERROR" },
            detail,
        };
        let spec = match backends.read_spec(&dir, None) {
            Ok(spec) => spec,
            Err(e) => {
                rows.push(row("-".into(), false, e.0));
                continue;
            }
        };
        let versions = spec.select_versions(&layout::versions(&dir));
        if versions.is_empty() {
            rows.push(row(
                "-".into(),
                false,
                "no numeric version folder selected by version_policy".into(),
            ));
        }
        for v in versions {
            // CPU only: a check must work on a machine without the serving GPU.
            // Ensembles have no model file; their step graph was checked with the config.
            let result = if spec.is_ensemble() {
                Ok(())
            } else {
                backends
                    .load_instance(&spec, v, Placement::Cpu, &ops)
                    .map(drop)
            };
            let detail = match &result {
                Ok(_) => format!(
                    "{} inputs, {} outputs, {} instance(s){}",
                    spec.inputs.len(),
                    spec.outputs.len(),
                    spec.instances.len(),
                    spec.warnings
                        .iter()
                        .map(|w| format!("; note: {w}"))
                        .collect::<String>()
                ),
                Err(e) => e.to_string(),
            };
            rows.push(row(v.to_string(), result.is_ok(), detail));
        }
    }
    Ok(rows)
}

/// Validates the tenants file; prints its tenants and warnings, or the
/// error. With the main repository `main`, also warns of a tenant's own
/// model that hides a main-repository model its patterns grant. True if
/// valid (warnings do not fail it).
pub fn check_tenants(file: &Path, main: Option<&Path>) -> bool {
    match kiln_tenancy::Tenants::read(file) {
        Ok(tenants) => {
            println!("{}: OK, {} tenant(s)", file.display(), tenants.len());
            for w in tenants.warnings() {
                println!("warning: {w}");
            }
            let names = |dir: &Path| -> Vec<String> {
                layout::model_dirs(dir)
                    .map(|dirs| dirs.into_iter().map(|(name, _)| name).collect())
                    .unwrap_or_default()
            };
            let main_models = main.map(names).unwrap_or_default();
            for t in tenants.iter() {
                for own in t.repository.as_deref().map(names).unwrap_or_default() {
                    if main_models.contains(&own) && t.may_use_shared(&own) {
                        println!(
                            "warning: tenant '{}': its own model '{own}' hides the main repository's '{own}' that its shared_models grant",
                            t.name
                        );
                    }
                }
            }
            for t in tenants.iter() {
                let repository = t
                    .repository
                    .as_ref()
                    .map_or("none".to_string(), |r| r.display().to_string());
                println!(
                    "  {}  scopes {:?}  repository {repository}  shared_models {:?}",
                    t.name, t.scopes, t.shared_patterns
                );
            }
            true
        }
        Err(e) => {
            eprintln!("error: {e}");
            false
        }
    }
}

pub fn print_table(rows: &[Row]) {
    let w =
        |f: fn(&Row) -> usize, title: &str| rows.iter().map(f).max().unwrap_or(0).max(title.len());
    let (wm, wv, ws) = (
        w(|r| r.model.len(), "MODEL"),
        w(|r| r.version.len(), "VERSION"),
        w(|r| r.status.len(), "STATUS"),
    );
    println!(
        "{:wm$}  {:wv$}  {:ws$}  DETAIL",
        "MODEL", "VERSION", "STATUS"
    );
    for r in rows {
        println!(
            "{:wm$}  {:wv$}  {:ws$}  {}",
            r.model, r.version, r.status, r.detail
        );
    }
}
