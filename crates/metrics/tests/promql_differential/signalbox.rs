//! Signalbox's side: the dataset in a `MemStorage`, each evaluation run by the PromQL
//! engine on a thread of its own so a panic or a hang becomes a reported difference rather
//! than the end of the test.

use crate::answer::Answer;
use crate::queries::Eval;
use signalbox_metrics::promql::{Engine, QueryError, Value};
use signalbox_metrics::storage::MemStorage;
use std::sync::{Arc, mpsc};
use std::time::Duration;

/// How long one evaluation may take before it counts as a hang.
const ENGINE_TIMEOUT: Duration = Duration::from_secs(30);

/// The name of evaluation threads: their panics are reported as differences, not printed.
const THREAD_NAME: &str = "promql-eval";

thread_local! {
    /// Where this evaluation thread last panicked, recorded by the panic hook.
    static PANIC_LOCATION: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

/// Replaces the panic hook once: an evaluation thread's panic records its location quietly
/// (hundreds of backtraces would bury the report); any other thread's panic is printed as
/// before.
fn quiet_evaluation_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if std::thread::current().name() == Some(THREAD_NAME) {
                let location = info.location().map(|l| l.to_string()).unwrap_or_default();
                PANIC_LOCATION.with(|p| *p.borrow_mut() = location);
            } else {
                previous(info);
            }
        }));
    });
}

/// Evaluates `query` on `storage` and converts the result.
pub fn answer(storage: &Arc<MemStorage>, query: &str, eval: Eval) -> Answer {
    quiet_evaluation_panics();
    let (tx, rx) = mpsc::sync_channel(1);
    let storage = Arc::clone(storage);
    let text = query.to_string();
    let spawned = std::thread::Builder::new().name(THREAD_NAME.into()).spawn(move || {
        let run = || {
            let engine = Engine::default();
            match eval {
                Eval::Instant(t) => engine.instant(&*storage, &text, t),
                Eval::Range { start, end, step } => engine.range(&*storage, &text, start, end, step),
            }
        };
        let answer = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)) {
            Ok(result) => convert(result),
            Err(payload) => {
                let message = payload
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "no message".into());
                let location = PANIC_LOCATION.with(|p| p.borrow().clone());
                Answer::Crash(format!("panicked at {location}: {message}"))
            }
        };
        let _ = tx.send(answer);
    });
    if let Err(e) = spawned {
        return Answer::Crash(format!("could not start an evaluation thread: {e}"));
    }
    match rx.recv_timeout(ENGINE_TIMEOUT) {
        Ok(answer) => answer,
        Err(mpsc::RecvTimeoutError::Timeout) => Answer::Crash(format!("no answer within {ENGINE_TIMEOUT:?}")),
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            Answer::Crash("the evaluation thread ended without an answer".into())
        }
    }
}

fn convert(result: Result<Value, QueryError>) -> Answer {
    match result {
        Err(e) => Answer::Error(e.to_string()),
        Ok(Value::Scalar { t, v }) => Answer::Scalar { t, v },
        Ok(Value::String { t, v }) => Answer::String { t, v },
        Ok(Value::Vector(samples)) => Answer::Vector(
            samples
                .into_iter()
                .map(|s| {
                    let mut labels = s.labels;
                    labels.sort();
                    (labels, s.t, s.v)
                })
                .collect(),
        ),
        Ok(Value::Matrix(series)) => Answer::Matrix(
            series
                .into_iter()
                .map(|s| {
                    let mut labels = s.labels;
                    labels.sort();
                    (labels, s.samples)
                })
                .collect(),
        ),
    }
}
