#include "hw/nvme/worker-pool.h"

#include <deque>
#include <thread>
#include <vector>

#include "util/mutex.h"

namespace qzns::nvme {

struct WorkerPool::State {
    util::Mutex mu;  // with cv: the task queue and the stop request
    util::CondVar cv;
    std::deque<std::function<void()>> tasks GUARDED_BY(mu);
    bool stop GUARDED_BY(mu) = false;
    std::vector<std::thread> threads;  // only the WorkerPool object's constructor and destructor
};

namespace {

void WorkerLoop(std::shared_ptr<WorkerPool::State> st) {
    for (;;) {
        std::function<void()> task;
        {
            util::MutexLock lk(st->mu);
            while (!st->stop && st->tasks.empty()) st->cv.Wait(st->mu);
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
        util::MutexLock lk(st_->mu);
        st_->stop = true;
        threads.swap(st_->threads);
    }
    st_->cv.NotifyAll();
    for (std::thread& t : threads) {
        if (t.get_id() == std::this_thread::get_id()) t.detach();
        else t.join();
    }
}

void WorkerPool::Post(std::function<void()> task) {
    {
        util::MutexLock lk(st_->mu);
        st_->tasks.push_back(std::move(task));
    }
    st_->cv.NotifyOne();
}

size_t WorkerPool::queued() const {
    util::MutexLock lk(st_->mu);
    return st_->tasks.size();
}

}  // namespace qzns::nvme
