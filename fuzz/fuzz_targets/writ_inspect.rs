//! `writ_verify::inspect` (and so `writ inspect`) on anything: decoding an unsigned writ for
//! display must never panic. Half the inputs are text; the other half are raw token bytes,
//! base64url-encoded here, so the fuzzer works on the protobuf container directly. The decoded
//! dates are formatted as `writ inspect` formats them.
#![no_main]

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let text = if mode % 2 == 0 {
        String::from_utf8_lossy(rest).into_owned()
    } else {
        URL_SAFE.encode(rest)
    };
    if let Ok(seen) = writ_verify::inspect(&text) {
        for time in [seen.issued_at, seen.expires_at, seen.effective_expires_at]
            .into_iter()
            .flatten()
        {
            // The verifier's own formatting of an expiry, as `Denial::Expired` shows it.
            let _ = writ_verify::Denial::Expired { expired_at: time }.to_string();
        }
        let _ = seen.blocks.iter().map(String::len).sum::<usize>();
    }
});
