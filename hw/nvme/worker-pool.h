// A small pool of threads that run the blocking BlockBackend calls of NVMe commands, so a
// transport's submitting thread never waits for storage. Commands of one queue run in parallel
// (the NVMe model has no ordering between commands; zone write order is the backend's job).
#pragma once

#include <cstddef>
#include <functional>
#include <memory>

namespace qzns::nvme {

class WorkerPool {
public:
    explicit WorkerPool(unsigned threads);
    // Runs every queued task, then joins. Safe to run on one of the pool's own threads (the last
    // reference may be dropped by a task): that thread is detached and exits after its task.
    ~WorkerPool();
    WorkerPool(const WorkerPool&) = delete;
    WorkerPool& operator=(const WorkerPool&) = delete;

    void Post(std::function<void()> task);
    unsigned threads() const { return nthreads_; }
    // Tasks queued but not yet started, for stats.
    size_t queued() const;

    struct State;  // shared with the threads, so a detached thread never sees it freed

private:
    std::shared_ptr<State> st_;
    unsigned nthreads_;
};

}  // namespace qzns::nvme
