//! The conf lexer, parser and evaluator on arbitrary text, through the sealed loader:
//! `include` and `include_shell` are errors there, so nothing a mutated conf names is
//! read or run. An error must point inside the text; a conf that loads must print (-p)
//! as text that loads to the same configuration and prints the same again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wstund::conf::{load_str_sealed, print_config};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match load_str_sealed("fuzz.conf", &text) {
        Err(e) => {
            let lines = text.split('\n').count() as u32;
            assert!(e.line <= lines.max(1), "line {} beyond {} lines: {}", e.line, lines, e);
            assert!(!e.message.is_empty());
            let _ = e.to_string();
        }
        Ok(loaded) => {
            let printed = print_config(&loaded.config);
            let again = match load_str_sealed("printed.conf", &printed) {
                Ok(l) => l.config,
                Err(e) => panic!("the printed conf does not load: {e}\n{printed}"),
            };
            assert!(again == loaded.config, "the printed conf loads differently:\n{printed}");
            assert_eq!(print_config(&again), printed);
        }
    }
});
