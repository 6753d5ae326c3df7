// A FabricsTarget test double for the NVMe/TCP transport: Connect succeeds (CNTLID 1),
// controller-to-host commands return a deterministic pattern, host-to-controller commands are
// checked against the same pattern, Async Event Requests stay pending until Disconnect.
// Completions come inline or from a worker thread (optionally delayed and reordered).
//
// CDW10[7:0] seeds the data pattern; CDW11 selects a behaviour for C2H commands:
//   bit0 complete with Invalid Field (no data), bit1 put 0xabcd in DW0, bit2 return half the data.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <deque>
#include <functional>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "hw/nvme/fabrics-target.h"
#include "util/mutex.h"

namespace qzns::nvmf::testing {

inline uint8_t PatternByte(uint8_t seed, size_t i) {
    return static_cast<uint8_t>(i * 131 + seed * 7 + (i >> 8));
}
inline void FillPattern(uint8_t seed, std::span<uint8_t> d) {
    for (size_t i = 0; i < d.size(); i++) d[i] = PatternByte(seed, i);
}
inline bool MatchesPattern(uint8_t seed, std::span<const uint8_t> d) {
    for (size_t i = 0; i < d.size(); i++)
        if (d[i] != PatternByte(seed, i)) return false;
    return true;
}

inline constexpr uint8_t kOpWrite = 0x01, kOpRead = 0x02, kOpIdentify = 0x06;
inline constexpr uint8_t kOpAer = 0x0c, kOpKeepAlive = 0x18, kOpFabrics = 0x7f;
inline constexpr uint8_t kFctypeConnect = 0x01, kFctypePropGet = 0x04, kFctypePropSet = 0x00;
inline constexpr uint16_t kStatusInvalidField = 0x02 << 1;
inline constexpr uint16_t kStatusDataTransferError = 0x04 << 1;
inline constexpr uint16_t kStatusAbortSqDeleted = 0x08 << 1;

class FakeTarget : public nvme::FabricsTarget {
public:
    struct Options {
        bool async = false;          // complete from the worker thread
        unsigned max_delay_us = 0;   // async: random delay per completion (reorders)
    };

    FakeTarget() : FakeTarget(Options{}) {}
    explicit FakeTarget(Options o) : opts_(o) {
        if (opts_.async) worker_ = std::thread([this] { Work(); });
    }
    ~FakeTarget() override {
        {
            util::MutexLock lk(mu_);
            quit_ = true;
        }
        cv_.NotifyAll();
        if (worker_.joinable()) worker_.join();
    }

    std::unique_ptr<nvme::FabricsQueue> NewQueue(const std::string& peer) override;

    // Asks every live queue's transport to close its connection (from this thread).
    void CloseAll() {
        std::vector<std::function<void()>> fns;
        {
            util::MutexLock lk(mu_);
            fns = close_fns_;
        }
        for (auto& f : fns)
            if (f) f();
    }

    std::vector<std::function<void()>> TakeHeld() {
        util::MutexLock lk(mu_);
        return std::move(held_);
    }
    // The peer of the last queue created.
    std::string LastPeer() {
        util::MutexLock lk(mu_);
        return last_peer_;
    }

    std::atomic<int> queues{0};
    std::atomic<int> disconnects{0};
    std::atomic<int> commands{0};
    std::atomic<int> bad_writes{0};
    std::atomic<bool> refuse{false};
    std::atomic<bool> complete_twice{false};
    std::atomic<bool> hold_aers{false};  // AERs never complete, not even on Disconnect

private:
    friend class FakeQueue;
    struct Job {
        std::function<void()> fn;
        std::chrono::steady_clock::time_point when;
    };
    void Complete(std::function<void()> fn) {
        if (!opts_.async) return fn();
        auto when = std::chrono::steady_clock::now();
        if (opts_.max_delay_us) {
            util::MutexLock lk(mu_);
            when += std::chrono::microseconds(rng_() % opts_.max_delay_us);
        }
        {
            util::MutexLock lk(mu_);
            jobs_.push_back(Job{std::move(fn), when});
        }
        cv_.NotifyAll();
    }
    void Work() {
        util::MutexLock lk(mu_);
        for (;;) {
            if (quit_ && jobs_.empty()) return;
            if (jobs_.empty()) {
                cv_.Wait(mu_);
                continue;
            }
            // Run the job with the earliest deadline (completions get reordered).
            size_t best = 0;
            for (size_t i = 1; i < jobs_.size(); i++)
                if (jobs_[i].when < jobs_[best].when) best = i;
            auto now = std::chrono::steady_clock::now();
            if (jobs_[best].when > now && !quit_) {
                cv_.WaitUntil(mu_, jobs_[best].when);
                continue;
            }
            Job j = std::move(jobs_[best]);
            jobs_.erase(jobs_.begin() + static_cast<long>(best));
            lk.Unlock();
            j.fn();
            lk.Lock();
        }
    }

    Options opts_;
    util::Mutex mu_;  // cv_ wakes the worker for a new job or quit_
    util::CondVar cv_;
    std::deque<Job> jobs_ GUARDED_BY(mu_);
    bool quit_ GUARDED_BY(mu_) = false;
    std::minstd_rand rng_ GUARDED_BY(mu_){42};
    std::vector<std::function<void()>> close_fns_ GUARDED_BY(mu_);  // by queue index
    std::vector<std::function<void()>> held_ GUARDED_BY(mu_);  // completions of held AERs
    std::string last_peer_ GUARDED_BY(mu_);
    std::thread worker_;
};

class FakeQueue : public nvme::FabricsQueue {
public:
    FakeQueue(FakeTarget* t, size_t index) : t_(t), index_(index) {}
    ~FakeQueue() override {
        util::MutexLock lk(t_->mu_);
        t_->close_fns_[index_] = nullptr;
    }

    void Submit(const nvme::SqeBytes& sqe, std::span<uint8_t> data,
                nvme::CompletionFn done) override {
        t_->commands++;
        nvme::CqeBytes cqe{};
        std::memcpy(cqe.b + 12, sqe.b + 2, 2);  // CID
        uint32_t c2h = 0;
        const uint8_t op = sqe.b[0];
        const uint8_t seed = sqe.b[40];
        const uint8_t behaviour = sqe.b[44];
        auto status = [&](uint16_t st) { std::memcpy(cqe.b + 14, &st, 2); };
        if (op == kOpAer && t_->hold_aers) {
            util::MutexLock lk(t_->mu_);
            t_->held_.push_back([done, cqe] { done(cqe, 0); });
            return;
        }
        if (op == kOpAer) {
            util::MutexLock lk(mu_);
            if (disconnected_) {
                status(kStatusAbortSqDeleted);
                done(cqe, 0);
            } else {
                pending_aers_.push_back([done, cqe]() mutable {
                    uint16_t st = kStatusAbortSqDeleted;
                    std::memcpy(cqe.b + 14, &st, 2);
                    done(cqe, 0);
                });
            }
            return;
        }
        if (op == kOpFabrics) {
            const uint8_t fctype = sqe.b[4];
            if (fctype == kFctypeConnect) {
                if (data.size() != 1024) status(kStatusInvalidField);
                cqe.b[0] = 1;  // CNTLID
            } else if (fctype == kFctypePropGet) {
                cqe.b[0] = 0x34;
                cqe.b[1] = 0x12;
            }
        } else if ((op & 3) == 2) {
            if (behaviour & 1) {
                status(kStatusInvalidField);
            } else {
                FillPattern(seed, data);
                c2h = static_cast<uint32_t>(data.size());
                if (behaviour & 2) {
                    cqe.b[0] = 0xcd;
                    cqe.b[1] = 0xab;
                }
                if (behaviour & 4) c2h /= 2;
            }
        } else if ((op & 3) == 1) {
            if (!MatchesPattern(seed, data)) {
                t_->bad_writes++;
                status(kStatusDataTransferError);
            }
        }
        if (t_->complete_twice) done(cqe, c2h);  // a buggy target
        t_->Complete([done = std::move(done), cqe, c2h] { done(cqe, c2h); });
    }

    void Disconnect() override {
        t_->disconnects++;
        std::vector<std::function<void()>> aers;
        {
            util::MutexLock lk(mu_);
            disconnected_ = true;
            aers.swap(pending_aers_);
        }
        for (auto& a : aers) t_->Complete(std::move(a));
    }

    void SetCloseRequest(std::function<void()> close) override {
        util::MutexLock lk(t_->mu_);
        t_->close_fns_[index_] = std::move(close);
    }

private:
    FakeTarget* t_;
    size_t index_;
    util::Mutex mu_;
    bool disconnected_ GUARDED_BY(mu_) = false;
    std::vector<std::function<void()>> pending_aers_ GUARDED_BY(mu_);
};

inline std::unique_ptr<nvme::FabricsQueue> FakeTarget::NewQueue(const std::string& peer) {
    if (refuse) return nullptr;
    queues++;
    util::MutexLock lk(mu_);
    last_peer_ = peer;
    close_fns_.emplace_back();
    return std::make_unique<FakeQueue>(this, close_fns_.size() - 1);
}

}  // namespace qzns::nvmf::testing
