#include <thread>
#include <vector>

#include "block/aio/aio.h"
#include "util/mutex.h"

namespace qzns {

struct TaskPool::State {
    util::Mutex mu;  // with cv: the queue and the stop request
    util::CondVar cv;
    PoolTask* head GUARDED_BY(mu) = nullptr;
    PoolTask* tail GUARDED_BY(mu) = nullptr;
    bool stop GUARDED_BY(mu) = false;
    std::vector<std::thread> threads;  // constructor and destructor only

    void Loop() {
        for (;;) {
            PoolTask* t;
            {
                util::MutexLock lk(mu);
                while (!stop && !head) cv.Wait(mu);
                if (!head) return;  // stopped and drained
                t = head;
                head = t->next;
                if (!head) tail = nullptr;
            }
            t->next = nullptr;
            t->run(t);
        }
    }
};

TaskPool::TaskPool(unsigned threads) : st_(std::make_unique<State>()) {
    for (unsigned i = 0; i < (threads ? threads : 1); i++) st_->threads.emplace_back([s = st_.get()] { s->Loop(); });
}

TaskPool::~TaskPool() {
    {
        util::MutexLock lk(st_->mu);
        st_->stop = true;
    }
    st_->cv.NotifyAll();
    for (std::thread& t : st_->threads) t.join();
}

unsigned TaskPool::threads() const { return static_cast<unsigned>(st_->threads.size()); }

void TaskPool::Post(PoolTask* t) {
    t->next = nullptr;
    util::MutexLock lk(st_->mu);
    if (st_->tail) st_->tail->next = t;
    else st_->head = t;
    st_->tail = t;
    // Under the lock: once it is released the task may run, complete its request and let its
    // owner destroy this pool, so nothing of the pool may be touched after the unlock.
    st_->cv.NotifyOne();
}

}  // namespace qzns
