//! Fuzz target: UTF-8 text -> protocol TOML parser and validation
//! (`optimize::protocol::Protocol::from_toml_str`), then the goal descriptions.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use rtopt::optimize::protocol::Protocol;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(p) = Protocol::from_toml_str(text, Path::new("fuzz/protocol.toml")) {
        let _ = p.referenced_structures();
        for s in &p.structures {
            for g in &s.goals {
                let _ = g.kind.describe();
            }
        }
    }
});
