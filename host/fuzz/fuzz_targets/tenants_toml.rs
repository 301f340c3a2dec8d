//! The tenants file (TOML) → validated tenants: whatever the text, parsing
//! answers with tenants or an error naming its line, never a panic; a valid
//! file answers key lookups and bearer tokens.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // A directory that does not exist: repositories and the JWKS file it
    // names are refused cleanly.
    if let Ok(tenants) =
        kiln_tenancy::Tenants::parse(Path::new("/nonexistent/kiln-fuzz/tenants.toml"), text)
    {
        let _ = tenants.by_api_key("alpha");
        for t in tenants.iter() {
            let _ = t.may_use_shared("digits");
        }
        let _ = tenants.warnings();
    }
});
