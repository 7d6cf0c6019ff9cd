//! The admin API's token end to end, with the real binary: a runner started with
//! `--admin-token-file` refuses the CLI until it sends the token (from
//! `--admin-token-file` or `ENTREPOT_ADMIN_TOKEN_FILE`), and a runner whose admin server
//! is not on loopback will not start without one.

use entrepot_e2e::*;

#[tokio::test]
async fn the_cli_sends_the_token_the_runner_wants() {
    let dir = tempfile::tempdir().unwrap();
    let manifests = dir.path().join("manifests");
    write_quickstart(&manifests, "http://127.0.0.1:9");
    let token = dir.path().join("token");
    std::fs::write(&token, "local-admin-token\n").unwrap();
    let token = token.to_str().unwrap();
    let data = dir.path().join("data");
    let args = ["run", manifests.to_str().unwrap(), "--data-dir", data.to_str().unwrap(), "--admin-token-file", token];
    let args: Vec<String> = args.map(String::from).to_vec();
    let runner = RunnerProcess::spawn(args, Vec::new()).await;
    let admin = runner.admin_url.as_str();

    let refused = run_cli(&["deadletters", "list", "--admin", admin]).await;
    assert!(!refused.success, "{refused:?}");
    assert!(refused.stderr.contains("401") && refused.stderr.contains("Authorization: Bearer"), "{refused:?}");
    assert!(!refused.stderr.contains("local-admin-token"), "the token is never echoed: {refused:?}");
    let listed = run_cli(&["deadletters", "list", "--admin", admin, "--admin-token-file", token]).await;
    assert!(listed.success, "{listed:?}");
    let status = reqwest::get(format!("{admin}/v1/status")).await.unwrap();
    assert_eq!(status.status(), 200, "status stays open: the operator reads it without a token");
}

#[tokio::test]
async fn a_runner_will_not_open_its_admin_api_beyond_loopback_without_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let manifests = dir.path().join("manifests");
    write_quickstart(&manifests, "http://127.0.0.1:9");
    let listen = format!("0.0.0.0:{}", free_port());
    let data = dir.path().join("data");
    let run = run_cli(&[
        "run",
        manifests.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
        "--listen",
        &format!("127.0.0.1:{}", free_port()),
        "--admin-listen",
        &listen,
    ])
    .await;
    assert!(!run.success, "{run:?}");
    assert!(run.stderr.contains("--admin-token-file") && run.stderr.contains(&listen), "{run:?}");
}
