//! The list: its shape, `page` and `per_page`, `has_more` and `total_count`.

use std::collections::HashSet;

use serde_json::json;

use crate::support::{both_backends, spawn_app, with, Backend};

both_backends!(
    the_list_pages_through_every_webhook_once,
    page_and_per_page_out_of_bounds_answer_422_naming_the_parameter,
);

async fn the_list_pages_through_every_webhook_once(backend: Backend) {
    let app = spawn_app(backend).await;
    let empty = app.get("/v1/webhooks", &app.token_a).await.expect(200);
    assert_eq!(
        empty.json,
        json!({"object": "list", "data": [], "has_more": false, "total_count": 0})
    );

    let mut created = HashSet::new();
    for i in 0..5 {
        let body = with(json!({"url": format!("https://example.com/{i}")}));
        created.insert(app.create(&app.token_a, &body).await);
        // Distinct created_at milliseconds, so "newest first" has one answer.
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    }
    // Another account's webhooks count for nothing here.
    app.create(&app.token_b, &with(json!({}))).await;

    let mut seen = Vec::new();
    for (page, expected_len, has_more) in [(1, 2, true), (2, 2, true), (3, 1, false)] {
        let reply = app
            .get(
                &format!("/v1/webhooks?page={page}&per_page=2"),
                &app.token_a,
            )
            .await
            .expect(200);
        assert_eq!(reply.json["object"], "list");
        assert_eq!(reply.json["total_count"], 5);
        assert_eq!(reply.json["has_more"], has_more, "page {page}");
        let data = reply.json["data"].as_array().unwrap();
        assert_eq!(data.len(), expected_len, "page {page}");
        assert!(data.iter().all(|w| w["object"] == "webhook"));
        seen.extend(data.iter().map(|w| w["id"].as_str().unwrap().to_string()));
    }
    assert_eq!(seen.len(), 5);
    assert_eq!(
        seen.into_iter().collect::<HashSet<_>>(),
        created,
        "no repeats, none missed"
    );

    let past_the_end = app
        .get("/v1/webhooks?page=4&per_page=2", &app.token_a)
        .await
        .expect(200);
    assert_eq!(past_the_end.json["data"], json!([]));
    assert_eq!(past_the_end.json["has_more"], false);
    assert_eq!(past_the_end.json["total_count"], 5);

    // The default page holds all five; the newest comes first.
    let all = app.get("/v1/webhooks", &app.token_a).await.expect(200);
    assert_eq!(all.json["data"].as_array().unwrap().len(), 5);
    assert_eq!(all.json["has_more"], false);
    assert_eq!(all.json["data"][0]["url"], "https://example.com/4");
    let max = app
        .get("/v1/webhooks?per_page=100", &app.token_a)
        .await
        .expect(200);
    assert_eq!(max.json["total_count"], 5);
}

async fn page_and_per_page_out_of_bounds_answer_422_naming_the_parameter(backend: Backend) {
    let app = spawn_app(backend).await;
    for (query, field) in [
        ("page=0", "page"),
        ("page=-3", "page"),
        ("page=two", "page"),
        ("page=", "page"),
        ("per_page=0", "per_page"),
        ("per_page=101", "per_page"),
        ("per_page=1e3", "per_page"),
        ("page=9223372036854775807&per_page=100", "page"),
    ] {
        let reply = app
            .get(&format!("/v1/webhooks?{query}"), &app.token_a)
            .await
            .expect(422);
        assert_eq!(reply.error_fields(), [field], "{query}");
    }
}
