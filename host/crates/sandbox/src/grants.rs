//! What a plugin may import. The kiln ABI (`kiln:plugin/*`) always; WASI
//! interfaces that only let a component run (streams, exit, an empty
//! environment, stderr into kiln's log) always; clocks and randomness are
//! linked but deterministic unless the model grants them; filesystem, network
//! and HTTP are never linked in ABI 1.0, and a component importing them is
//! refused at load with the import's name.

use std::time::Duration;

use wasmtime::component::Component;
use wasmtime::Engine;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder};

/// Capabilities a model can grant its plugin (config parameter `wasm_grants`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Grants {
    /// Real wall-clock time (otherwise the wall clock reads 1970-01-01).
    pub clock: bool,
    /// Real randomness (otherwise a fixed-seed generator).
    pub random: bool,
}

impl Grants {
    pub fn parse(list: &str) -> Result<Self, String> {
        let mut g = Grants::default();
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match item {
                "clock" => g.clock = true,
                "random" => g.random = true,
                "filesystem" | "network" => {
                    return Err(format!(
                        "wasm_grants: '{item}' cannot be granted in plugin ABI 1.0"
                    ))
                }
                other => {
                    return Err(format!(
                        "wasm_grants: unknown grant '{other}' (known: clock, random)"
                    ))
                }
            }
        }
        Ok(g)
    }
}

const REFUSED: [(&str, &str); 3] = [
    ("wasi:filesystem/", "filesystem access"),
    ("wasi:sockets/", "network access"),
    ("wasi:http/", "HTTP access"),
];

/// Checks the component's imports against the policy.
pub fn check_imports(engine: &Engine, component: &Component) -> Result<(), String> {
    let ty = component.component_type();
    for (name, _) in ty.imports(engine) {
        if let Some((_, what)) = REFUSED.iter().find(|(prefix, _)| name.starts_with(prefix)) {
            return Err(format!(
                "plugin imports '{name}' ({what}), which kiln does not grant to plugins; remove the use of it (in Rust, std::fs / std::net) from the plugin"
            ));
        }
    }
    Ok(())
}

/// The wall clock of a guest without the `clock` grant: always the epoch.
struct EpochClock;
impl wasmtime_wasi::HostWallClock for EpochClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

/// The WASI context every guest gets: nothing but what `grants` allows.
pub fn wasi_builder(grants: Grants) -> WasiCtxBuilder {
    use rand_wasi::SeedableRng;
    let mut b = WasiCtx::builder();
    // No args, env, preopens or sockets: the builder starts empty. Guest
    // stderr goes nowhere (plugins log through kiln:plugin/host).
    b.allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false);
    if !grants.clock {
        b.wall_clock(EpochClock);
    }
    if !grants.random {
        b.secure_random(rand_wasi::rngs::StdRng::seed_from_u64(0));
        b.insecure_random(rand_wasi::rngs::StdRng::seed_from_u64(1));
        b.insecure_random_seed(0);
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_parse_and_refuse_what_cannot_be_granted() {
        assert_eq!(
            Grants::parse("clock, random").unwrap(),
            Grants {
                clock: true,
                random: true
            }
        );
        assert_eq!(Grants::parse("").unwrap(), Grants::default());
        assert!(Grants::parse("filesystem")
            .unwrap_err()
            .contains("cannot be granted"));
        assert!(Grants::parse("gpu")
            .unwrap_err()
            .contains("unknown grant 'gpu'"));
    }
}
