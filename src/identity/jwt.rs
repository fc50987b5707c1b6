//! Reading a compact JWT's header and claims *before* its signature is checked, only to route it
//! to the right issuer and to report clear errors. Nothing read here is trusted until the
//! issuer's verifier has accepted the signature.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

use super::IdentityError;

/// Tokens larger than this are refused before any parsing.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

#[derive(Debug)]
pub struct UnverifiedJwt {
    pub alg: String,
    pub issuer: String,
    pub claims: Map<String, Value>,
}

pub fn decode(token: &str) -> Result<UnverifiedJwt, IdentityError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(IdentityError::Malformed("the token is too large"));
    }
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(_signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(IdentityError::Malformed(
            "not a compact JWS (three dot-separated parts)",
        ));
    };
    let header = json_object(header)?;
    let claims = json_object(payload)?;
    let alg = header
        .get("alg")
        .and_then(Value::as_str)
        .ok_or(IdentityError::Malformed("the header has no alg"))?
        .to_owned();
    if header.contains_key("crit") {
        return Err(IdentityError::Malformed(
            "critical header extensions are not supported",
        ));
    }
    let issuer = claims
        .get("iss")
        .and_then(Value::as_str)
        .ok_or(IdentityError::Malformed("the token has no iss claim"))?
        .to_owned();
    Ok(UnverifiedJwt {
        alg,
        issuer,
        claims,
    })
}

fn json_object(part: &str) -> Result<Map<String, Value>, IdentityError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| IdentityError::Malformed("a part is not base64url"))?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(IdentityError::Malformed("a part is not a JSON object")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(value: &str) -> String {
        URL_SAFE_NO_PAD.encode(value)
    }

    #[test]
    fn refuses_shapes_that_are_not_a_jws() {
        assert!(decode("").is_err());
        assert!(decode("a.b").is_err());
        assert!(decode("a.b.c.d").is_err());
        assert!(decode(&"a".repeat(MAX_TOKEN_BYTES + 1)).is_err());
        let header = b64(r#"{"alg":"RS256"}"#);
        assert!(decode(&format!("{header}.{}.x", b64("[1]"))).is_err());
        assert!(decode(&format!("{header}.{}.x", b64(r#"{"sub":"a"}"#))).is_err());
        let crit = b64(r#"{"alg":"RS256","crit":["exp"]}"#);
        assert!(decode(&format!("{crit}.{}.x", b64(r#"{"iss":"a"}"#))).is_err());
    }

    #[test]
    fn reads_alg_and_issuer() {
        let token = format!(
            "{}.{}.sig",
            b64(r#"{"alg":"ES256"}"#),
            b64(r#"{"iss":"https://i"}"#)
        );
        let jwt = decode(&token).map_err(|e| e.to_string());
        let jwt = jwt.as_ref().map(|j| (j.alg.as_str(), j.issuer.as_str()));
        assert_eq!(jwt, Ok(("ES256", "https://i")));
    }
}
