//! config.pbtxt text → ModelConfig → the checks every model gets at load.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let file = Path::new("config.pbtxt");
    if let Ok(config) = kiln_model_config::parse_text(file, text) {
        // A directory that does not exist: validation must not need one to fail cleanly.
        let _ =
            kiln::backend::registry().spec(Path::new("/nonexistent/kiln-fuzz/model"), config, None);
    }
});
