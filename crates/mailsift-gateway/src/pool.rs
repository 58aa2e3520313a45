//! The judges: a fixed set of threads, one per core, that parse and judge messages in the order they
//! arrive.
//!
//! Judging is CPU work. On Tokio's blocking pool every message in flight had a thread of its own (up to
//! 512), and the kernel shared the cores among all of them: each message then took as long as the
//! number of messages in flight allowed, and a large one far longer, which made the latency's tail (and the
//! context switches, 7% of the gateway's CPU under load). Here a message waits its turn in one queue and is
//! then judged at full speed: the same throughput, a tail close to the median. A panic in a check costs that
//! message only (the caller answers with a temporary failure); the thread goes on with the next.

use std::panic::{catch_unwind, AssertUnwindSafe};

type Job = Box<dyn FnOnce() + Send + 'static>;

/// A judge thread's stack. The engine bounds every sender-controlled depth (MIME nesting is cut before
/// parsing, and no view recurses on it), so 2 MiB would do; the larger stack is a margin, costing address
/// space only, so that a depth bug the limits missed is one message's work rather than an overflow that
/// aborts the process.
pub const JUDGE_STACK_BYTES: usize = 16 << 20;

/// A fixed pool of judge threads fed from one queue (first come, first judged).
pub struct JudgePool {
    queue: crossbeam_channel::Sender<Job>,
    threads: usize,
}

impl JudgePool {
    /// A pool of `threads` threads (at least one); they end when the pool is dropped and the queue is empty.
    pub fn new(threads: usize) -> JudgePool {
        let threads = threads.max(1);
        let (queue, jobs) = crossbeam_channel::unbounded::<Job>();
        for i in 0..threads {
            let jobs = jobs.clone();
            std::thread::Builder::new()
                .name(format!("mailsift-judge-{i}"))
                .stack_size(JUDGE_STACK_BYTES)
                .spawn(move || {
                    for job in jobs {
                        job();
                    }
                })
                .expect("cannot start a judge thread");
        }
        JudgePool { queue, threads }
    }

    /// One thread per core (what the machine says it has, at least two).
    pub fn per_core() -> JudgePool {
        JudgePool::new(std::thread::available_parallelism().map_or(2, |n| n.get()).max(2))
    }

    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Queues `work` for a judge thread at once (the queue's order is the order of the calls) and returns
    /// its answer to await, without holding an async thread. An error means the work panicked (the message:
    /// the panic's text).
    pub fn run<T, F>(&self, work: F) -> impl std::future::Future<Output = Result<T, String>> + use<T, F>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(catch_unwind(AssertUnwindSafe(work)).map_err(|p| panic_text(p.as_ref())));
        });
        let queued = self.queue.send(job).is_ok();
        async move {
            if !queued {
                return Err("the judge threads have stopped".to_string());
            }
            rx.await.unwrap_or_else(|_| Err("a judge thread stopped before answering".into()))
        }
    }

    /// As [`JudgePool::run`], and says how long the work waited in the queue and how long it ran.
    pub fn run_measured<T, F>(
        &self,
        work: F,
    ) -> impl std::future::Future<Output = Result<(T, std::time::Duration, std::time::Duration), String>> + use<T, F>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let queued = std::time::Instant::now();
        self.run(move || {
            let started = std::time::Instant::now();
            let out = work();
            (out, started - queued, started.elapsed())
        })
    }
}

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    let text = p.downcast_ref::<&str>().copied().or_else(|| p.downcast_ref::<String>().map(String::as_str));
    format!("panic in the scan: {}", text.unwrap_or("(no message)"))
}

#[cfg(test)]
mod tests {
    use super::JudgePool;

    #[tokio::test]
    async fn work_runs_and_a_panic_costs_only_its_own_job() {
        let pool = JudgePool::new(2);
        assert_eq!(pool.run(|| 6 * 7).await, Ok(42));
        let err = pool.run(|| -> u32 { panic!("a check fell over") }).await.unwrap_err();
        assert!(err.contains("a check fell over"), "{err}");
        // Every thread still judges after the panic.
        for i in 0..pool.threads() * 4 {
            assert_eq!(pool.run(move || i).await, Ok(i));
        }
    }

    #[tokio::test]
    async fn jobs_are_taken_in_the_order_they_came() {
        let pool = JudgePool::new(1);
        let order = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let waits: Vec<_> = (0..20)
            .map(|i| {
                let order = order.clone();
                pool.run(move || order.lock().unwrap().push(i))
            })
            .collect();
        for w in waits {
            w.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), (0..20).collect::<Vec<_>>());
    }
}
