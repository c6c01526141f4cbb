use super::*;

#[test]
fn routes_use_the_raw_path() {
    assert_eq!(route("/api/v1/oauth2/token"), Some(Route::Token));
    assert_eq!(
        route("/api/v2/users/123/media"),
        Some(Route::List {
            account: "123".into()
        })
    );
    assert_eq!(
        route("/api/v2/users/123/media/a%2F0%2Fx.png"),
        Some(Route::Media {
            account: "123".into(),
            raw_id: "a%2F0%2Fx.png".into()
        })
    );
    assert_eq!(
        route("/api/v2/users/123/media/a/0/x.png"),
        Some(Route::Media {
            account: "123".into(),
            raw_id: "a/0/x.png".into()
        })
    );
    assert_eq!(route("/api/v2/users/123/media/"), None);
    assert_eq!(route("/api/v2/users/123/other"), None);
    assert_eq!(route("/api/v2/users/123"), None);
    assert_eq!(route("/"), None);
}
