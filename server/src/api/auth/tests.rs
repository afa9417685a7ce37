use std::time::Duration;

use axum::http::HeaderValue;

use super::*;

fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.insert(*k, HeaderValue::from_str(v).unwrap());
    }
    h
}

#[test]
fn key_file_lines_names_and_comments() {
    let text = "# team keys\n\nteam-a sk-aaa\n  sk-bbb  \nops.1\tsk-ccc\n";
    let keys = parse_key_file(text).unwrap();
    assert_eq!(
        keys,
        vec![
            ("team-a".to_string(), "sk-aaa".to_string()),
            ("key-4".to_string(), "sk-bbb".to_string()),
            ("ops.1".to_string(), "sk-ccc".to_string()),
        ]
    );
    let e = parse_key_file("a b c\n").unwrap_err();
    assert_eq!(
        e.to_string(),
        "line 1: expected `KEY` or `NAME KEY`, found 3 fields"
    );
    assert!(parse_key_file("bad/name sk\n").is_err());
}

#[test]
fn empty_whitespace_and_duplicate_keys_are_refused() {
    assert!(ApiKeys::new(Some(""), vec![]).is_err());
    assert!(ApiKeys::new(Some(" \n\t"), vec![]).is_err());
    let dup_id = vec![("a".into(), "k1".into()), ("a".into(), "k2".into())];
    assert!(ApiKeys::new(None, dup_id).is_err());
    let dup_key = vec![("a".into(), "k1".into()), ("b".into(), "k1".into())];
    assert!(ApiKeys::new(None, dup_key).is_err());
    assert!(ApiKeys::new(None, vec![]).unwrap().is_empty());
}

#[test]
fn keys_are_trimmed_and_bearer_is_case_insensitive() {
    // A Secret made from a file keeps the trailing newline.
    let keys = ApiKeys::new(
        Some("sk-secret\n"),
        parse_key_file("team-b sk-b\n").unwrap(),
    )
    .unwrap();
    for h in [
        headers(&[("authorization", "Bearer sk-secret")]),
        headers(&[("authorization", "bearer sk-secret")]),
        headers(&[("authorization", "BEARER   sk-secret ")]),
        headers(&[("x-api-key", "sk-secret")]),
    ] {
        assert_eq!(
            keys.identify(&h).as_ref().map(KeyId::as_str),
            Some("default")
        );
    }
    let b = keys.identify(&headers(&[("authorization", "Bearer sk-b")]));
    assert_eq!(b.as_ref().map(KeyId::as_str), Some("team-b"));
    for h in [
        headers(&[("authorization", "Basic sk-secret")]),
        headers(&[("authorization", "Bearer sk-secre")]),
        headers(&[("authorization", "Bearersk-secret")]),
        HeaderMap::new(),
    ] {
        assert_eq!(keys.identify(&h), None, "{h:?}");
    }
}

#[test]
fn request_bucket_refills_per_minute() {
    let lim = RateLimiter::new(RateLimits {
        requests_per_minute: Some(2),
        tokens_per_minute: None,
    });
    let a = KeyId("a".into());
    let b = KeyId("b".into());
    let t0 = Instant::now();
    lim.admit_request(&a, t0).unwrap();
    lim.admit_request(&a, t0).unwrap();
    match lim.admit_request(&a, t0) {
        Err(ApiError::RateLimited {
            key_id,
            limit,
            retry_after_secs,
            ..
        }) => {
            assert_eq!(key_id, "a");
            assert_eq!(limit, "requests_per_minute");
            // One request refills in 60 / 2 = 30 s.
            assert_eq!(retry_after_secs, 30);
        }
        other => panic!("expected 429, got {other:?}"),
    }
    // Other keys have their own bucket.
    lim.admit_request(&b, t0).unwrap();
    // After 30 s one more request fits.
    lim.admit_request(&a, t0 + Duration::from_secs(30)).unwrap();
}

#[test]
fn token_bucket_charges_prompt_then_output() {
    let lim = RateLimiter::new(RateLimits {
        requests_per_minute: None,
        tokens_per_minute: Some(600),
    });
    let k = KeyId("k".into());
    let t0 = Instant::now();
    // More than a minute's budget can never pass: 400, not 429.
    match lim.admit_tokens(&k, "prompt", 601, t0) {
        Err(e) => assert_eq!(e.status().as_u16(), 400),
        Ok(()) => panic!("601 > 600 admitted"),
    }
    lim.admit_tokens(&k, "prompt", 400, t0).unwrap();
    lim.charge_tokens(&k, 300, t0); // generated: the level is now -100
    match lim.admit_tokens(&k, "prompt", 100, t0) {
        Err(ApiError::RateLimited {
            retry_after_secs, ..
        }) => assert_eq!(retry_after_secs, 20), // 200 tokens at 10 per second
        other => panic!("expected 429, got {other:?}"),
    }
    lim.admit_tokens(&k, "prompt", 100, t0 + Duration::from_secs(20))
        .unwrap();
}
