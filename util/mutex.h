// Annotated locks: std::mutex and friends carry no thread-safety attributes in libstdc++, so
// Clang's -Wthread-safety (util/thread-annotations.h) cannot see through std::lock_guard. These
// thin wrappers are what the analysis understands; use them instead of the std:: types.
#pragma once

#include <atomic>
#include <cassert>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <shared_mutex>
#include <thread>
#include <utility>

#include "util/thread-annotations.h"

namespace qzns::util {

class CondVar;

class CAPABILITY("mutex") Mutex {
public:
    Mutex() = default;
    Mutex(const Mutex&) = delete;
    Mutex& operator=(const Mutex&) = delete;

    void Lock() ACQUIRE() {
        mu_.lock();
        owner_.store(std::this_thread::get_id(), std::memory_order_relaxed);
    }
    void Unlock() RELEASE() {
        owner_.store(std::thread::id(), std::memory_order_relaxed);
        mu_.unlock();
    }
    bool TryLock() TRY_ACQUIRE(true) {
        if (!mu_.try_lock()) return false;
        owner_.store(std::this_thread::get_id(), std::memory_order_relaxed);
        return true;
    }
    // For code the analysis cannot follow (callbacks run with the lock held): tells it the lock
    // is held, and checks that at run time in builds with assertions.
    void AssertHeld() const ASSERT_CAPABILITY(this) {
        assert(owner_.load(std::memory_order_relaxed) == std::this_thread::get_id());
    }

private:
    friend class CondVar;
    std::mutex mu_;
    // Only for AssertHeld: the thread that holds mu_ (relaxed: a thread only ever compares it
    // with its own id, which it stored itself while holding mu_).
    std::atomic<std::thread::id> owner_{};
};

// Holds a Mutex for a scope. Unlock() / Lock() drop and retake it inside the scope (e.g. around
// a callback that must not run under the lock); the destructor unlocks only if held.
class SCOPED_CAPABILITY MutexLock {
public:
    explicit MutexLock(Mutex& mu) ACQUIRE(mu) : mu_(mu) { mu_.Lock(); }
    ~MutexLock() RELEASE() {
        if (held_) mu_.Unlock();
    }
    MutexLock(const MutexLock&) = delete;
    MutexLock& operator=(const MutexLock&) = delete;

    void Unlock() RELEASE() {
        held_ = false;
        mu_.Unlock();
    }
    void Lock() ACQUIRE() {
        mu_.Lock();
        held_ = true;
    }

private:
    Mutex& mu_;
    bool held_ = true;
};

// A condition variable for Mutex. Waits name the mutex rather than a guard so the analysis can
// check the caller holds it. A predicate that reads guarded members must be annotated too,
// `[&]() REQUIRES(mu_) { return done_; }`: the analysis checks a lambda's body on its own.
class CondVar {
public:
    CondVar() = default;
    CondVar(const CondVar&) = delete;
    CondVar& operator=(const CondVar&) = delete;

    void NotifyOne() { cv_.notify_one(); }
    void NotifyAll() { cv_.notify_all(); }

    void Wait(Mutex& mu) REQUIRES(mu) {
        Adopted a(mu);
        cv_.wait(a.lk);
    }
    // False on timeout.
    template <class Rep, class Period>
    bool WaitFor(Mutex& mu, const std::chrono::duration<Rep, Period>& d) REQUIRES(mu) {
        Adopted a(mu);
        return cv_.wait_for(a.lk, d) == std::cv_status::no_timeout;
    }
    template <class Clock, class Duration>
    bool WaitUntil(Mutex& mu, const std::chrono::time_point<Clock, Duration>& t) REQUIRES(mu) {
        Adopted a(mu);
        return cv_.wait_until(a.lk, t) == std::cv_status::no_timeout;
    }

    // Predicate forms; the analysis is off inside them only because it cannot tell that `pred`
    // needs `mu` (an annotated predicate is checked where it is written).
    template <class Pred>
    void Wait(Mutex& mu, Pred pred) REQUIRES(mu) NO_THREAD_SAFETY_ANALYSIS {
        while (!pred()) Wait(mu);
    }
    // pred() at the end (false: timed out with the condition still false).
    template <class Rep, class Period, class Pred>
    bool WaitFor(Mutex& mu, const std::chrono::duration<Rep, Period>& d, Pred pred)
        REQUIRES(mu) NO_THREAD_SAFETY_ANALYSIS {
        return WaitUntil(mu, std::chrono::steady_clock::now() + d, std::move(pred));
    }
    template <class Clock, class Duration, class Pred>
    bool WaitUntil(Mutex& mu, const std::chrono::time_point<Clock, Duration>& t, Pred pred)
        REQUIRES(mu) NO_THREAD_SAFETY_ANALYSIS {
        while (!pred()) {
            if (!WaitUntil(mu, t)) return pred();
        }
        return true;
    }

private:
    // Lends the held std::mutex to std::condition_variable for one wait and takes it back,
    // keeping Mutex's owner record right while another thread may hold the mutex.
    struct Adopted {
        explicit Adopted(Mutex& m) : mu(m), lk(m.mu_, std::adopt_lock) {
            mu.owner_.store(std::thread::id(), std::memory_order_relaxed);
        }
        ~Adopted() {
            mu.owner_.store(std::this_thread::get_id(), std::memory_order_relaxed);
            lk.release();
        }
        Mutex& mu;
        std::unique_lock<std::mutex> lk;
    };
    std::condition_variable cv_;
};

// Reader/writer lock (many readers or one writer).
class CAPABILITY("shared_mutex") SharedMutex {
public:
    SharedMutex() = default;
    SharedMutex(const SharedMutex&) = delete;
    SharedMutex& operator=(const SharedMutex&) = delete;

    void Lock() ACQUIRE() { mu_.lock(); }
    void Unlock() RELEASE() { mu_.unlock(); }
    void LockShared() ACQUIRE_SHARED() { mu_.lock_shared(); }
    void UnlockShared() RELEASE_SHARED() { mu_.unlock_shared(); }

private:
    std::shared_mutex mu_;
};

class SCOPED_CAPABILITY WriterLock {
public:
    explicit WriterLock(SharedMutex& mu) ACQUIRE(mu) : mu_(mu) { mu_.Lock(); }
    ~WriterLock() RELEASE() { mu_.Unlock(); }
    WriterLock(const WriterLock&) = delete;
    WriterLock& operator=(const WriterLock&) = delete;

private:
    SharedMutex& mu_;
};

class SCOPED_CAPABILITY ReaderLock {
public:
    explicit ReaderLock(SharedMutex& mu) ACQUIRE_SHARED(mu) : mu_(mu) { mu_.LockShared(); }
    ~ReaderLock() RELEASE() { mu_.UnlockShared(); }
    ReaderLock(const ReaderLock&) = delete;
    ReaderLock& operator=(const ReaderLock&) = delete;

private:
    SharedMutex& mu_;
};

}  // namespace qzns::util
