//! Following files across rotation: every line arrives exactly once.

use crate::receiver::{Mode, Receiver};
use crate::support::{Rotation, assert_all_arrive, config, small_buffer, spawn_writer, start};
use signalbox_testkit::eventually;
use std::time::Duration;

async fn rotate_while_writing(rotation: Rotation) -> signalbox_agent::Progress {
    let r = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    let agent = start(config(&dir.path().join("data"), &r.url(), &[format!("{}/app.log*", logs.display())]));
    let writer = spawn_writer(logs.join("app.log"), 3000, Duration::from_micros(400), rotation);
    tokio::task::spawn_blocking(move || writer.join().unwrap()).await.unwrap();
    let total = assert_all_arrive(&r, 3000, Duration::from_secs(15)).await;
    assert_eq!(total, 3000, "a line was read twice across a rotation");
    let p = agent.progress.snapshot();
    assert_eq!(p.lines_read, 3000, "{p}");
    agent.stop().await;
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rename_rotation_while_writing() {
    crate::support::bounded(async {
        let p = rotate_while_writing(Rotation::Rename { every: 700 }).await;
        // Renames seen (two rotations between two scans are seen as one).
        assert!(p.rotations >= 1, "{p}");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copytruncate_rotation_while_writing() {
    crate::support::bounded(async {
        let p = rotate_while_writing(Rotation::CopyTruncate { every: 700 }).await;
        // Truncations seen (two rotations between two polls are seen as one).
        assert!(p.truncations >= 1, "{p}");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_deleted_while_open_is_read_to_its_end() {
    crate::support::bounded(async {
        let r = Receiver::start().await;
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("app.log");
        let writer = spawn_writer(log.clone(), 2000, Duration::ZERO, Rotation::None);
        writer.join().unwrap();
        // The last line has no newline: it is complete once the file is gone.
        let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        std::io::Write::write_all(&mut f, crate::support::line(2000).as_bytes()).unwrap();
        drop(f);
        // Nothing is acknowledged and the buffer is small, so the agent stops early in the file.
        r.set_mode(Mode::Status(503, None));
        let mut cfg = config(&dir.path().join("data"), &r.url(), &[log.display().to_string()]);
        small_buffer(&mut cfg, 16 * 1024, 40 * 1024);
        let agent = start(cfg);
        eventually(Duration::from_secs(10), "reading to pause", || async {
            let p = agent.progress.snapshot();
            (p.reading_paused && p.files_followed == 1).then_some(())
        })
        .await;
        std::fs::remove_file(&log).unwrap();
        r.set_mode(Mode::Accept);
        let total = assert_all_arrive(&r, 2001, Duration::from_secs(15)).await;
        assert_eq!(total, 2001);
        eventually(Duration::from_secs(5), "the deleted file to be closed", || async {
            (agent.progress.snapshot().files_followed == 0).then_some(())
        })
        .await;
        agent.stop().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_files_are_picked_up_and_lines_without_newline_wait() {
    crate::support::bounded(async {
        let r = Receiver::start().await;
        let dir = tempfile::tempdir().unwrap();
        let agent = start(config(&dir.path().join("data"), &r.url(), &[format!("{}/*.log", dir.path().display())]));
        std::fs::write(dir.path().join("a.log"), "first\n").unwrap();
        std::fs::write(dir.path().join("b.txt"), "not matched\n").unwrap();
        eventually(Duration::from_secs(5), "a.log", || async { (r.lines().len() == 1).then_some(()) }).await;
        let mut f = std::fs::OpenOptions::new().append(true).create(true).open(dir.path().join("b.log")).unwrap();
        use std::io::Write;
        f.write_all(b"half a li").unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(r.lines().len(), 1, "an unterminated line is not shipped while the file is followed");
        f.write_all(b"ne\n").unwrap();
        eventually(Duration::from_secs(5), "b.log", || async { (r.lines().len() == 2).then_some(()) }).await;
        let bodies: Vec<String> = r.lines().iter().map(|v| v["body"].as_str().unwrap().to_owned()).collect();
        assert_eq!(bodies, ["first", "half a line"]);
        agent.stop().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_from_end_applies_only_to_files_found_at_the_first_start() {
    crate::support::bounded(async {
        let r = Receiver::start().await;
        let dir = tempfile::tempdir().unwrap();
        let old = dir.path().join("old.log");
        std::fs::write(&old, "history 1\nhistory 2\n").unwrap();
        let mut cfg = config(&dir.path().join("data"), &r.url(), &[format!("{}/*.log", dir.path().display())]);
        cfg.sources[0].read_from = "end".into();
        let agent = start(cfg.clone());
        eventually(Duration::from_secs(5), "the old file to be followed", || async {
            (agent.progress.snapshot().files_followed == 1).then_some(())
        })
        .await;
        std::fs::write(dir.path().join("new.log"), "new 1\n").unwrap();
        let mut f = std::fs::OpenOptions::new().append(true).open(&old).unwrap();
        std::io::Write::write_all(&mut f, b"live 1\n").unwrap();
        eventually(Duration::from_secs(5), "two records", || async { (r.lines().len() == 2).then_some(()) }).await;
        agent.stop().await;
        // Written while the agent is down: read after the restart although read_from = end.
        std::io::Write::write_all(&mut f, b"live 2\n").unwrap();
        let agent = start(cfg);
        eventually(Duration::from_secs(5), "three records", || async { (r.lines().len() == 3).then_some(()) }).await;
        let mut bodies: Vec<String> = r.lines().iter().map(|v| v["body"].as_str().unwrap().to_owned()).collect();
        bodies.sort();
        assert_eq!(bodies, ["live 1", "live 2", "new 1"]);
        agent.stop().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_files_than_max_open_files_are_all_read() {
    crate::support::bounded(async {
        let r = Receiver::start().await;
        let dir = tempfile::tempdir().unwrap();
        for i in 0..5 {
            std::fs::write(dir.path().join(format!("{i}.log")), format!("seq=00000{i} file {i}\n")).unwrap();
        }
        let mut cfg = config(&dir.path().join("data"), &r.url(), &[format!("{}/*.log", dir.path().display())]);
        cfg.max_open_files = 2;
        cfg.sources[0].close_inactive = signalbox_core::config::Dur::millis(200);
        let agent = start(cfg);
        let p = eventually(Duration::from_secs(10), "every file", || async {
            let p = agent.progress.snapshot();
            assert!(p.files_followed <= 2, "{p}");
            (r.lines().len() == 5).then_some(p)
        })
        .await;
        assert_eq!(p.lines_read, 5);
        agent.stop().await;
    })
    .await
}
