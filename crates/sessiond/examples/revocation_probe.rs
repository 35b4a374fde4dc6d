//! How long after a logout on node A does node B refuse the cookie?
//!
//! `revocation_probe A_URL B_URL USER PASSWORD [ROUNDS=200]`: each round
//! logs in on A, makes B load the session (three `GET /api/profile`, so
//! with the near-cache B answers it from memory), logs out on A, and from
//! the moment A's answer arrives polls B until it answers 401. Prints the
//! distribution of that delay and how many 200s B gave after the logout
//! was acknowledged. Run it while a load generator keeps B busy
//! (`bench/revocation.sh`).

use std::time::{Duration, Instant};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, a, b, user, password, rest @ ..] = args.as_slice() else {
        return Err("usage: revocation_probe A_URL B_URL USER PASSWORD [ROUNDS]".into());
    };
    let rounds: usize = rest.first().map_or(Ok(200), |r| r.parse())?;
    let http = reqwest::Client::builder().build()?;
    let profile = format!("{b}/api/profile");
    let mut delays = Vec::with_capacity(rounds);
    let mut stale_answers = 0usize;
    for _ in 0..rounds {
        let r = http
            .post(format!("{a}/login"))
            .json(&serde_json::json!({"username": user, "password": password}))
            .send()
            .await?;
        if !r.status().is_success() {
            return Err(format!("login on A: {}", r.status()).into());
        }
        let cookie = r
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with("__Host-sessiond="))
            .and_then(|v| v.split(';').next())
            .ok_or("no session cookie")?
            .to_owned();
        let csrf = r.json::<serde_json::Value>().await?["csrf_token"]
            .as_str()
            .ok_or("no csrf_token")?
            .to_owned();
        for _ in 0..3 {
            let s = http.get(&profile).header("cookie", &cookie).send().await?;
            if !s.status().is_success() {
                return Err(format!("B refused a live session: {}", s.status()).into());
            }
        }
        let out = http
            .post(format!("{a}/logout"))
            .header("cookie", &cookie)
            .header("x-csrf-token", &csrf)
            .send()
            .await?;
        let acknowledged = Instant::now();
        if !out.status().is_success() {
            return Err(format!("logout on A: {}", out.status()).into());
        }
        loop {
            let s = http.get(&profile).header("cookie", &cookie).send().await?;
            match s.status().as_u16() {
                401 => break,
                200 => stale_answers += 1,
                other => return Err(format!("B answered {other}").into()),
            }
            if acknowledged.elapsed() > Duration::from_secs(5) {
                return Err("B still accepted the session 5 s after the logout".into());
            }
        }
        delays.push(acknowledged.elapsed());
    }
    delays.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "RESULT revocation rounds={rounds} p50_ms={:.2} p90_ms={:.2} p99_ms={:.2} max_ms={:.2} min_ms={:.2} stale_200s_after_logout={stale_answers}",
        ms(percentile(&delays, 0.5)),
        ms(percentile(&delays, 0.9)),
        ms(percentile(&delays, 0.99)),
        ms(delays[delays.len() - 1]),
        ms(delays[0]),
    );
    let buckets = [0.5, 1.0, 2.0, 5.0, 10.0, 20.0, f64::INFINITY];
    let mut line = String::from("DISTRIBUTION");
    let mut from = 0.0;
    for to in buckets {
        let n = delays
            .iter()
            .filter(|d| ms(**d) >= from && ms(**d) < to)
            .count();
        line.push_str(&format!(" [{from},{to})ms={n}"));
        from = to;
    }
    println!("{line}");
    Ok(())
}
