use super::*;

fn store(page_size: usize) -> Store {
    Store::new(StoreConfig {
        page_size,
        ..StoreConfig::default()
    })
}

#[test]
fn pages_cover_every_name_once_in_order() {
    let s = store(7);
    for i in 0..50 {
        Store::put(
            &s,
            &format!("m{i:03}"),
            Bytes::from_static(b"x"),
            "text/plain",
            None,
        )
        .unwrap();
    }
    let all = crate::api::list_all(&s).unwrap();
    let names: Vec<_> = all.iter().map(|m| m.name.clone()).collect();
    assert_eq!(names, s.names());
    assert_eq!(names.len(), 50);
    assert_eq!(s.stats.snapshot().list, 8); // ceil(50/7)
}

#[test]
fn bad_token_is_refused() {
    let s = store(2);
    assert_eq!(
        Store::list_page(&s, Some("not a token")),
        Err(StoreError::BadToken)
    );
}

#[test]
fn oversize_put_is_refused_and_stores_nothing() {
    let s = store(10);
    let big = Bytes::from(vec![0u8; MAX_MEDIA_SIZE as usize + 1]);
    assert!(matches!(
        Store::put(&s, "big", big, "image/png", None),
        Err(StoreError::TooLarge { .. })
    ));
    assert!(s.is_empty());
}

#[test]
fn downloads_carry_the_upload_time_unless_told_not_to() {
    let s = store(10);
    let hour_ago = SystemTime::now() - Duration::from_secs(3600);
    Store::put_at(
        &s,
        "a",
        Bytes::from_static(b"x"),
        "text/plain",
        None,
        hour_ago,
    )
    .unwrap();
    let whole = |t: SystemTime| {
        let secs = t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    };
    let m = MediaApi::get(&s, "a").unwrap();
    assert_eq!(m.last_modified, Some(whole(hour_ago)));
    let mut config = s.config();
    config.last_modified = false;
    s.set_config(config);
    assert_eq!(MediaApi::get(&s, "a").unwrap().last_modified, None);
    // A media uploaded an hour ago lives an hour less.
    s.set_config(StoreConfig {
        retention: Duration::from_secs(1800),
        ..StoreConfig::default()
    });
    assert!(Store::get(&s, "a").is_err());
}

#[test]
fn expired_media_vanish() {
    let s = Store::new(StoreConfig {
        retention: Duration::from_millis(50),
        ..StoreConfig::default()
    });
    Store::put(&s, "a", Bytes::from_static(b"x"), "text/plain", None).unwrap();
    assert_eq!(s.len(), 1);
    std::thread::sleep(Duration::from_millis(80));
    assert_eq!(Store::get(&s, "a").unwrap_err(), StoreError::NotFound);
    assert!(Store::list_page(&s, None).unwrap().0.is_empty());
}
