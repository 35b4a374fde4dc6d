//! `X-Forwarded-For` and `Forwarded` from a trusted proxy, and `Host`: any
//! header value gives an address (one of the hops or the peer) or a refusal,
//! never a panic.
#![no_main]

use std::net::IpAddr;

use http::{HeaderMap, HeaderValue, Version};
use libfuzzer_sys::fuzz_target;
use sessiond_axum::{ForwardedHeader, TrustedProxies};

fuzz_target!(|data: &[u8]| {
    let Ok(value) = HeaderValue::from_bytes(data) else {
        return;
    };
    let peer: IpAddr = "10.0.0.1".parse().expect("an address");
    for (name, header) in [
        ("x-forwarded-for", ForwardedHeader::XForwardedFor),
        ("forwarded", ForwardedHeader::Forwarded),
    ] {
        let mut headers = HeaderMap::new();
        headers.append(name, value.clone());
        let proxies = TrustedProxies::new(vec!["10.0.0.0/8".parse().expect("a net")], header);
        let _ = proxies.client_ip(peer, &headers);
    }
    let mut headers = HeaderMap::new();
    headers.append(http::header::HOST, value);
    let _ = sessiond::middleware::check_host(Version::HTTP_11, &headers, &[]);
});
