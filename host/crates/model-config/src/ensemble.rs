//! An ensemble's step graph, checked when its config loads (running it is
//! kiln's pipeline's work).

use std::collections::{HashMap, HashSet};

use crate::proto::model_ensembling::Step;

/// Checks the step graph when the ensemble's config is loaded: every step
/// input is an ensemble input or some step's output, no tensor is produced
/// twice, every ensemble output is produced, and no step waits on itself.
pub fn check_steps(
    name: &str,
    inputs: &[String],
    outputs: &[String],
    steps: &[Step],
) -> std::result::Result<(), String> {
    if steps.is_empty() {
        return Err("field 'ensemble_scheduling': at least one step is required".into());
    }
    let mut available: HashSet<&str> = inputs.iter().map(String::as_str).collect();
    let mut producer: HashMap<&str, usize> = HashMap::new();
    for (i, step) in steps.iter().enumerate() {
        if step.model_name.is_empty() {
            return Err(format!(
                "ensemble_scheduling step[{i}]: field 'model_name' is required"
            ));
        }
        if step.model_name == name {
            return Err(format!(
                "ensemble_scheduling step[{i}]: an ensemble cannot call itself"
            ));
        }
        if step.output_map.is_empty() {
            return Err(format!(
                "ensemble_scheduling step[{i}] ('{}'): field 'output_map' is empty",
                step.model_name
            ));
        }
        for tensor in step.output_map.values() {
            if inputs.contains(tensor) {
                return Err(format!("ensemble_scheduling step[{i}] ('{}'): output_map writes '{tensor}', which is an ensemble input", step.model_name));
            }
            if let Some(other) = producer.insert(tensor, i) {
                return Err(format!("ensemble_scheduling: tensor '{tensor}' is produced by step[{other}] and step[{i}]"));
            }
        }
    }
    // Resolve in dataflow order to find unreachable steps (missing inputs or cycles).
    let mut done = vec![false; steps.len()];
    loop {
        let ready: Vec<usize> = (0..steps.len())
            .filter(|&i| {
                !done[i]
                    && steps[i]
                        .input_map
                        .values()
                        .all(|t| available.contains(t.as_str()))
            })
            .collect();
        if ready.is_empty() {
            break;
        }
        for i in ready {
            done[i] = true;
            available.extend(steps[i].output_map.values().map(String::as_str));
        }
    }
    if let Some(i) = done.iter().position(|d| !d) {
        let missing: Vec<&str> = steps[i]
            .input_map
            .values()
            .map(String::as_str)
            .filter(|t| !available.contains(t))
            .collect();
        return Err(format!(
            "ensemble_scheduling step[{i}] ('{}') can never run: no step or ensemble input provides {}",
            steps[i].model_name,
            missing.iter().map(|t| format!("'{t}'")).collect::<Vec<_>>().join(", ")
        ));
    }
    for out in outputs {
        if !available.contains(out.as_str()) {
            return Err(format!(
                "ensemble output '{out}' is not produced by any step's output_map"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(model: &str, inputs: &[(&str, &str)], outputs: &[(&str, &str)]) -> Step {
        Step {
            model_name: model.into(),
            model_version: -1,
            input_map: inputs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            output_map: outputs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn a_chain_validates() {
        let steps = [
            step("pre", &[("IMAGE", "png")], &[("PIXELS", "pixels")]),
            step("digits", &[("pixels", "pixels")], &[("logits", "logits")]),
            step("post", &[("LOGITS", "logits")], &[("LABEL", "label")]),
        ];
        check_steps("e", &["png".into()], &["label".into()], &steps).unwrap();
    }

    #[test]
    fn broken_graphs_are_named() {
        let missing = [step("a", &[("X", "nowhere")], &[("Y", "out")])];
        assert!(check_steps("e", &["in".into()], &["out".into()], &missing)
            .unwrap_err()
            .contains("'nowhere'"));
        let twice = [
            step("a", &[("X", "in")], &[("Y", "out")]),
            step("b", &[("X", "in")], &[("Y", "out")]),
        ];
        assert!(check_steps("e", &["in".into()], &["out".into()], &twice)
            .unwrap_err()
            .contains("produced by step[0] and step[1]"));
        let cycle = [
            step("a", &[("X", "t2")], &[("Y", "t1")]),
            step("b", &[("X", "t1")], &[("Y", "t2")]),
        ];
        assert!(check_steps("e", &["in".into()], &["t1".into()], &cycle)
            .unwrap_err()
            .contains("can never run"));
        let unproduced = [step("a", &[("X", "in")], &[("Y", "t")])];
        assert!(
            check_steps("e", &["in".into()], &["out".into()], &unproduced)
                .unwrap_err()
                .contains("'out'")
        );
        let selfcall = [step("e", &[("X", "in")], &[("Y", "out")])];
        assert!(check_steps("e", &["in".into()], &["out".into()], &selfcall).is_err());
    }
}
