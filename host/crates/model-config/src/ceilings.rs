//! Ceilings on a model's numeric `parameters`, set by whoever owns the
//! repository it loads from (a tenant's plugin quotas: `wasm_memory_mb`,
//! `wasm_timeout_ms`, `wasm_fuel`). The backend that reads a parameter
//! applies its ceiling, because only it knows the parameter's default.

use std::collections::BTreeMap;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ceilings {
    /// Who sets them, as errors name it (`tenant 'team-a'`).
    pub owner: String,
    /// Parameter name → the largest value a config may ask for.
    pub limits: BTreeMap<String, u64>,
}

impl Ceilings {
    /// What parameter `key` comes to: `asked` (the config's value, `None`
    /// when absent) or else `default` (`None`: unlimited), held under its
    /// ceiling. A config asking for more than the ceiling is an error naming
    /// it; an absent parameter gets the lower of its default and the ceiling.
    pub fn apply(
        ceilings: Option<&Self>,
        key: &str,
        asked: Option<u64>,
        default: Option<u64>,
    ) -> Result<Option<u64>, String> {
        let Some((ceilings, &max)) = ceilings.and_then(|c| c.limits.get(key).map(|m| (c, m)))
        else {
            return Ok(asked.or(default));
        };
        match asked {
            Some(v) if v > max => Err(format!(
                "parameter '{key}' is {v}, above the ceiling of {max} that {} has (tenants file quotas.{key})",
                ceilings.owner
            )),
            Some(v) => Ok(Some(v)),
            None => Ok(Some(default.map_or(max, |d| d.min(max)))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ceiling_refuses_more_and_lowers_defaults() {
        let c = Ceilings {
            owner: "tenant 'a'".into(),
            limits: [("wasm_memory_mb".to_string(), 64)].into(),
        };
        let c = Some(&c);
        assert_eq!(
            Ceilings::apply(c, "wasm_memory_mb", Some(32), Some(256)),
            Ok(Some(32))
        );
        assert_eq!(
            Ceilings::apply(c, "wasm_memory_mb", None, Some(256)),
            Ok(Some(64))
        );
        assert_eq!(
            Ceilings::apply(c, "wasm_memory_mb", None, Some(16)),
            Ok(Some(16))
        );
        let e = Ceilings::apply(c, "wasm_memory_mb", Some(65), Some(256)).unwrap_err();
        assert!(
            e.contains("ceiling of 64") && e.contains("tenant 'a'"),
            "{e}"
        );
        assert_eq!(Ceilings::apply(c, "wasm_fuel", None, None), Ok(None));
        assert_eq!(
            Ceilings::apply(None, "wasm_fuel", Some(5), None),
            Ok(Some(5))
        );
    }

    #[test]
    fn an_unlimited_default_gets_the_ceiling() {
        let c = Ceilings {
            owner: "tenant 'a'".into(),
            limits: [("wasm_fuel".to_string(), 1000)].into(),
        };
        assert_eq!(
            Ceilings::apply(Some(&c), "wasm_fuel", None, None),
            Ok(Some(1000))
        );
    }
}
