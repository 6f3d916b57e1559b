//! Delivery: at least once through receiver restarts, agent crashes and backpressure.

use crate::receiver::{Mode, Receiver};
use crate::support::{ChildAgent, Rotation, assert_all_arrive, config, seqs, small_buffer, spawn_writer, start};
use signalbox_testkit::eventually;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receiver_restarts_lose_nothing() {
    crate::support::bounded(async {
        let r = Receiver::start().await;
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("app.log");
        let agent = start(config(&dir.path().join("data"), &r.url(), &[log.display().to_string()]));
        let writer = spawn_writer(log, 3000, Duration::from_micros(500), Rotation::None);
        eventually(Duration::from_secs(10), "some lines", || async { (seqs(&r).0.len() > 300).then_some(()) }).await;
        r.stop();
        eventually(Duration::from_secs(10), "failed sends", || async {
            (agent.progress.snapshot().send_failures > 2).then_some(())
        })
        .await;
        r.restart().await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        r.stop();
        tokio::time::sleep(Duration::from_millis(300)).await;
        r.restart().await;
        tokio::task::spawn_blocking(move || writer.join().unwrap()).await.unwrap();
        assert_all_arrive(&r, 3000, Duration::from_secs(15)).await;
        let p = agent.progress.snapshot();
        assert!(p.send_failures > 0, "{p}");
        agent.stop().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_killed_and_restarted_loses_nothing() {
    crate::support::bounded(async {
        let r = Receiver::start().await;
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("app.log");
        let cfg = config(&dir.path().join("data"), &r.url(), &[format!("{}*", log.display())]);
        let writer = spawn_writer(log, 4000, Duration::from_micros(800), Rotation::Rename { every: 1500 });
        let agent = ChildAgent::spawn(&cfg, dir.path());
        eventually(Duration::from_secs(15), "some lines", || async { (seqs(&r).0.len() > 500).then_some(()) }).await;
        agent.kill();
        let shipped = seqs(&r).0.len();
        tokio::time::sleep(Duration::from_millis(400)).await;
        let agent = ChildAgent::spawn(&cfg, dir.path());
        eventually(Duration::from_secs(10), "progress after the restart", || async {
            (seqs(&r).0.len() > shipped + 200).then_some(())
        })
        .await;
        // Kill it again in the middle of the rest, then let a third run finish.
        agent.kill();
        let agent = ChildAgent::spawn(&cfg, dir.path());
        tokio::task::spawn_blocking(move || writer.join().unwrap()).await.unwrap();
        let total = assert_all_arrive(&r, 4000, Duration::from_secs(15)).await;
        assert!(total >= 4000);
        drop(agent);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_restart_resumes_exactly_where_it_stopped() {
    crate::support::bounded(async {
        let r = Receiver::start().await;
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("app.log");
        let cfg = config(&dir.path().join("data"), &r.url(), &[log.display().to_string()]);
        spawn_writer(log.clone(), 1000, Duration::ZERO, Rotation::None).join().unwrap();
        let agent = start(cfg.clone());
        assert_all_arrive(&r, 1000, Duration::from_secs(10)).await;
        agent.stop().await;
        // While it is down: more lines, and the node refuses the first tries after the restart.
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        for seq in 1000..1500 {
            writeln!(f, "{}", crate::support::line(seq)).unwrap();
        }
        r.set_mode(Mode::Status(503, None));
        let agent = start(cfg);
        eventually(Duration::from_secs(10), "a refused try", || async { (r.refused() > 0).then_some(()) }).await;
        r.set_mode(Mode::Accept);
        let total = assert_all_arrive(&r, 1500, Duration::from_secs(10)).await;
        assert_eq!(total, 1500, "nothing is sent twice after a clean stop");
        agent.stop().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_disk_buffer_pauses_reading_and_drops_nothing() {
    crate::support::bounded(async {
        let r = Receiver::start().await;
        r.set_mode(Mode::Status(429, Some(1)));
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("app.log");
        spawn_writer(log.clone(), 3000, Duration::ZERO, Rotation::None).join().unwrap();
        let mut cfg = config(&dir.path().join("data"), &r.url(), &[log.display().to_string()]);
        small_buffer(&mut cfg, 16 * 1024, 48 * 1024);
        let agent = start(cfg);
        let p = eventually(Duration::from_secs(10), "reading to pause", || async {
            let p = agent.progress.snapshot();
            p.reading_paused.then_some(p)
        })
        .await;
        assert!(p.buffered_bytes <= 48 * 1024, "{p}");
        assert!(p.lag_bytes > 0 && p.lines_read < 3000, "{p}");
        let refused_before = r.refused();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let later = agent.progress.snapshot();
        assert_eq!(later.lines_read, p.lines_read, "reading stays paused while the buffer is full");
        // Retry-After: 1 is honoured: about one try a second, not the 50–400 ms backoff.
        assert!(r.refused() - refused_before <= 3, "{} tries in 1.5 s", r.refused() - refused_before);
        assert!(later.send_failures > 0);
        r.set_mode(Mode::Accept);
        let total = assert_all_arrive(&r, 3000, Duration::from_secs(15)).await;
        assert_eq!(total, 3000);
        agent.stop().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_refused_as_too_large_go_out_in_halves() {
    crate::support::bounded(async {
        let r = Receiver::start().await;
        r.set_mode(Mode::MaxLines(7));
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("app.log");
        spawn_writer(log.clone(), 50, Duration::ZERO, Rotation::None).join().unwrap();
        let agent = start(config(&dir.path().join("data"), &r.url(), &[log.display().to_string()]));
        let total = assert_all_arrive(&r, 50, Duration::from_secs(10)).await;
        assert_eq!(total, 50);
        assert!(r.refused() >= 1);
        agent.stop().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_lines_refused_by_the_node_are_dropped_and_the_rest_delivered() {
    crate::support::bounded(async {
        let r = Receiver::start().await;
        r.set_mode(Mode::RefuseContaining("POISON".into()));
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("app.log");
        // A batch of only invalid lines: the node answers 400 naming one at a time.
        std::fs::write(&log, "POISON 1\nPOISON 2\nPOISON 3\n").unwrap();
        let agent = start(config(&dir.path().join("data"), &r.url(), &[log.display().to_string()]));
        eventually(Duration::from_secs(8), "the invalid lines dropped", || async {
            let p = agent.progress.snapshot();
            (p.records_invalid == 3 && p.buffered_batches == 0).then_some(())
        })
        .await;
        assert_eq!(r.refused(), 3);
        // A batch with one invalid line: the node keeps the others and names it in its 200.
        let lines: Vec<String> =
            (0..10).map(|i| if i == 4 { "POISON pill".into() } else { format!("good {i}") }).collect();
        let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        std::io::Write::write_all(&mut f, (lines.join("\n") + "\n").as_bytes()).unwrap();
        eventually(Duration::from_secs(8), "the valid lines", || async { (r.lines().len() == 9).then_some(()) }).await;
        assert!(r.lines().iter().all(|v| v["body"].as_str().unwrap().starts_with("good")));
        // Refused lines are counted as invalid, never as shipped.
        eventually(Duration::from_secs(3), "the counts", || async {
            let p = agent.progress.snapshot();
            (p.records_invalid == 4 && p.records_shipped == 13 - 4 && p.buffered_batches == 0).then_some(())
        })
        .await;
        agent.stop().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_after_an_idle_spell_ships_within_the_backed_off_poll_and_stop_is_prompt() {
    crate::support::bounded(async {
        let r = Receiver::start().await;
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("app.log");
        std::fs::write(&log, format!("{}\n", crate::support::line(0))).unwrap();
        let mut cfg = config(&dir.path().join("data"), &r.url(), &[log.display().to_string()]);
        // Polls back off from 100 ms to 400 ms while the file is idle; batches seal after 200 ms.
        cfg.poll_interval = signalbox_core::config::Dur::millis(100);
        cfg.scan_interval = signalbox_core::config::Dur::secs(1);
        cfg.batch.timeout = signalbox_core::config::Dur::millis(200);
        let agent = start(cfg);
        eventually(Duration::from_secs(10), "the first line", || async { (seqs(&r).0.len() == 1).then_some(()) }).await;
        // Long enough for the polls to reach their longest wait, and for the idle sender to
        // sleep on its notification rather than a poll.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let written = std::time::Instant::now();
        let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        std::io::Write::write_all(&mut f, format!("{}\n", crate::support::line(1)).as_bytes()).unwrap();
        eventually(Duration::from_secs(10), "the line written after the idle spell", || async {
            (seqs(&r).0.len() == 2).then_some(())
        })
        .await;
        let latency = written.elapsed();
        eprintln!("a line written after 2 s of idleness shipped in {latency:?}");
        // The file was closed after close_inactive (1 s), so it is reopened at the next glob scan
        // (1 s; otherwise the 400 ms poll), then 200 ms of batch and the request; the rest is
        // slack for a loaded machine.
        assert!(latency < Duration::from_secs(3), "shipped {latency:?} after it was written");
        let stopping = std::time::Instant::now();
        agent.stop().await;
        // The reader and the idle sender wake on the stop itself, not at a poll.
        assert!(stopping.elapsed() < Duration::from_secs(2), "stopped in {:?}", stopping.elapsed());
        assert_all_arrive(&r, 2, Duration::from_secs(1)).await;
    })
    .await
}
