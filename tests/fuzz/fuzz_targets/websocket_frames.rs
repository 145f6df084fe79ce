#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| graphfront::fuzzing::websocket_frames(data));
