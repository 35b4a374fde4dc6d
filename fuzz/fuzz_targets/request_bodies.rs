//! The JSON and form bodies of the login, token, refresh, revoke, password
//! and attribute routes: any bytes give a value or an `ApiError` with a 4xx
//! status, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sessiond::routes::account::PasswordChange;
use sessiond::routes::auth::LoginRequest;
use sessiond::routes::token::{Credentials, RefreshRequest, RevokeRequest};
use sessiond_axum::ApiError;
use sessiond_axum::body::{parse_form, parse_json};

fn check<T>(result: Result<T, ApiError>) {
    if let Err(e) = result {
        assert!(e.status.is_client_error(), "{e}");
    }
}

fuzz_target!(|data: &[u8]| {
    check(parse_json::<LoginRequest>(data));
    check(parse_form::<LoginRequest>(data));
    check(parse_json::<Credentials>(data));
    check(parse_json::<RefreshRequest>(data));
    check(parse_form::<RefreshRequest>(data));
    check(parse_json::<RevokeRequest>(data));
    check(parse_form::<RevokeRequest>(data));
    check(parse_json::<PasswordChange>(data));
    check(parse_json::<serde_json::Map<String, serde_json::Value>>(
        data,
    ));
});
