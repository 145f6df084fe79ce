#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| graphfront::fuzzing::graphql_document(data));
