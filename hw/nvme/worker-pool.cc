#include "hw/nvme/worker-pool.h"

#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

namespace qzns::nvme {

struct WorkerPool::State {
    std::mutex mu;
    std::condition_variable cv;
    std::deque<std::function<void()>> tasks;
    bool stop = false;
    std::vector<std::thread> threads;
};

namespace {

void WorkerLoop(std::shared_ptr<WorkerPool::State> st) {
    for (;;) {
        std::function<void()> task;
        {
            std::unique_lock<std::mutex> lk(st->mu);
            st->cv.wait(lk, [&] { return st->stop || !st->tasks.empty(); });
            if (st->tasks.empty()) return;  // stop requested and drained
            task = std::move(st->tasks.front());
            st->tasks.pop_front();
        }
        task();
    }
}

}  // namespace

WorkerPool::WorkerPool(unsigned threads) : st_(std::make_shared<State>()), nthreads_(threads ? threads : 1) {
    for (unsigned i = 0; i < nthreads_; i++) st_->threads.emplace_back(WorkerLoop, st_);
}

WorkerPool::~WorkerPool() {
    std::vector<std::thread> threads;
    {
        std::lock_guard<std::mutex> lk(st_->mu);
        st_->stop = true;
        threads.swap(st_->threads);
    }
    st_->cv.notify_all();
    for (std::thread& t : threads) {
        if (t.get_id() == std::this_thread::get_id()) t.detach();
        else t.join();
    }
}

void WorkerPool::Post(std::function<void()> task) {
    {
        std::lock_guard<std::mutex> lk(st_->mu);
        st_->tasks.push_back(std::move(task));
    }
    st_->cv.notify_one();
}

size_t WorkerPool::queued() const {
    std::lock_guard<std::mutex> lk(st_->mu);
    return st_->tasks.size();
}

}  // namespace qzns::nvme
