//! The broker's first look at a workload identity token (`writ::identity::jwt::decode`): the
//! size cap, the compact-JWS split, base64url and the JSON of header and claims, all before any
//! signature is checked. Half the inputs are raw text; the other half are two byte strings
//! encoded as a header and a payload, so the fuzzer reaches the JSON directly.
#![no_main]

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let token = if mode % 2 == 0 {
        String::from_utf8_lossy(rest).into_owned()
    } else {
        let split = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        let (header, payload) = rest.split_at(split);
        let payload = payload.get(1..).unwrap_or_default();
        format!(
            "{}.{}.sig",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(payload)
        )
    };
    if let Ok(jwt) = writ::identity::jwt::decode(&token) {
        // What the broker does next with the unverified values: route by issuer and algorithm.
        let _ = (jwt.alg.len(), jwt.issuer.len(), jwt.claims.len());
    }
});
