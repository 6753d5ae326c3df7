// A File that injects faults and simulates power loss, for crash testing the qcow2 engine
// (leveldb's FaultInjection Env, RocksDB's FaultInjectionTestFS, QEMU's blkdebug).
//
// Model: the inner File is the durable medium. Pwrite, PunchHole and Truncate are kept in an
// ordered log of unsynced operations that overlays the inner file for reads and Size(); Sync()
// applies the log to the inner file, syncs it and clears the log. SimulateCrash() applies only
// the part of the log a power cut could have left on disk and discards the rest.
//
// Typical crash loop:
//     auto ff = NewFaultFile(NewMemFile());
//     ff->SetCrashPoint(n);                  // the (n+1)-th mutating op and all later ops fail
//     RunWorkload(BorrowFile(ff.get()));     // until it hits the cut
//     ff->SimulateCrash(CrashMode::kTearSectors, seed);
//     auto disk = ff->CloneDurable();        // or ff->PowerOn() and reopen ff itself
//     CheckImage(std::move(*disk));
//
// Thread-safe: one mutex serialises every operation (tests, not speed).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "block/file.h"
#include "util/mutex.h"

namespace qzns {

// Bit set of operation kinds, for choosing which operations a fault applies to.
enum class OpKind : uint32_t {
    kNone = 0,
    kRead = 1u << 0,       // Pread
    kWrite = 1u << 1,      // Pwrite
    kSync = 1u << 2,       // Sync
    kTruncate = 1u << 3,   // Truncate
    kPunchHole = 1u << 4,  // PunchHole
    kQuery = 1u << 5,      // Size, AllocatedBytes
    // The operations that change the medium; SetCrashPoint counts these.
    kMutating = kWrite | kSync | kTruncate | kPunchHole,
    kAll = kRead | kMutating | kQuery,
};
constexpr OpKind operator|(OpKind a, OpKind b) {
    return static_cast<OpKind>(static_cast<uint32_t>(a) | static_cast<uint32_t>(b));
}
constexpr bool HasKind(OpKind set, OpKind k) {
    return (static_cast<uint32_t>(set) & static_cast<uint32_t>(k)) != 0;
}

enum class CrashMode {
    kDropUnsynced,      // every unsynced operation is lost
    kKeepRandomSubset,  // each unsynced operation independently kept or lost, whole
    kTearSectors,       // each 512-byte sector of each unsynced write independently kept or lost;
                        // truncates and punched holes are kept or lost whole
};

struct FaultFileStats {
    uint64_t reads = 0;
    uint64_t writes = 0;
    uint64_t syncs = 0;
    uint64_t truncates = 0;
    uint64_t punch_holes = 0;
    uint64_t queries = 0;
    uint64_t failed = 0;          // operations this wrapper failed on purpose
    uint64_t bytes_written = 0;   // by successful Pwrites
    uint64_t unsynced_ops = 0;    // log length right now
    uint64_t crashes = 0;         // SimulateCrash calls
};

// Called before each operation with its kind and byte range (len 0 for Sync and queries;
// off is the new size for Truncate). A non-ok Status fails the operation with that Status.
// Lets a test express events the built-in faults do not cover ("fail the second write at
// offset 0x30000").
using FaultHook = std::function<Status(OpKind kind, uint64_t off, uint64_t len)>;

class FaultFile final : public File {
public:
    explicit FaultFile(std::unique_ptr<File> inner);
    ~FaultFile() override;

    Status Pread(void* buf, uint64_t len, uint64_t off) override;
    Status Pwrite(const void* buf, uint64_t len, uint64_t off) override;
    Status Sync() override;
    Result<uint64_t> Size() override;
    Status Truncate(uint64_t size) override;
    Status PunchHole(uint64_t off, uint64_t len) override;
    // The inner file's figure when nothing is unsynced, else the logical size (an estimate).
    Result<uint64_t> AllocatedBytes() override;
    const std::string& name() const override;

    // ---- power loss ----

    // Leaves the durable medium as a power cut could: applies the subset of unsynced operations
    // that `mode` keeps (chosen with a generator seeded by `seed`, so a failing seed replays),
    // in order, and drops the log. Afterwards the file is powered off: every operation fails with
    // EIO, so the engine instance that was running cannot touch the crashed state while it is
    // torn down. Call PowerOn() to reuse this file, or CloneDurable() for a fresh copy.
    [[nodiscard]] Status SimulateCrash(CrashMode mode, uint64_t seed);
    // Ends the power-off state and clears every injected fault; counters are kept.
    void PowerOn();
    // A MemFile holding a copy of the durable medium (unsynced operations are not included).
    // Works in any state, including powered off.
    [[nodiscard]] Result<std::unique_ptr<File>> CloneDurable();

    // Lets n more mutating operations (writes, syncs, truncates, punched holes) through; the
    // next one and every operation after it, reads included, fail with EIO "simulated power
    // cut" until SimulateCrash()/PowerOn(). The op that hits the cut has no effect.
    void SetCrashPoint(uint64_t n);
    // True once the crash point was reached (or SimulateCrash ran) and power is still off.
    bool powered_off() const;

    // ---- error injection ----

    // Lets n more operations of the given kinds succeed, then fails the following ones with
    // `err` (EIO, ENOSPC, ...): all of them, or only the first one when `once` is set.
    void FailAfter(uint64_t n, int err, OpKind kinds, bool once = false);
    // Fails each operation of the given kinds with probability 1/one_in, using a generator
    // seeded with `seed` (RocksDB's one-in-N injection). one_in 0 turns it off.
    void FailRandomly(uint32_t one_in, uint64_t seed, int err, OpKind kinds);
    // Fails every Pwrite and PunchHole that overlaps [off, off + len) with `err`.
    void FailWritesInRange(uint64_t off, uint64_t len, int err = EIO);
    void SetHook(FaultHook hook);
    // Removes every injected error (not the crash point or power-off state).
    void ClearFaults();

    FaultFileStats stats() const;

private:
    struct PendingOp;
    struct Faults;

    // Runs the hook (SetHook) with mu_ held: a hook sees the operations in the order they apply.
    Status Admit(OpKind kind, uint64_t off, uint64_t len) REQUIRES(mu_);
    Result<uint64_t> LogicalSize() REQUIRES(mu_);
    static Status Apply(File& f, const PendingOp& op);

    mutable util::Mutex mu_;
    // The durable medium. The pointer is fixed at construction; calls through it happen under
    // mu_ (except name(), which never changes).
    const std::unique_ptr<File> inner_;
    std::vector<PendingOp> log_ GUARDED_BY(mu_);  // unsynced operations, oldest first
    const std::unique_ptr<Faults> faults_ PT_GUARDED_BY(mu_);
    bool powered_off_ GUARDED_BY(mu_) = false;
    bool have_size_ GUARDED_BY(mu_) = false;
    uint64_t size_ GUARDED_BY(mu_) = 0;  // logical size (inner + log), valid when have_size_
    FaultFileStats stats_ GUARDED_BY(mu_);
};

[[nodiscard]] std::unique_ptr<FaultFile> NewFaultFile(std::unique_ptr<File> inner);

// A non-owning File that forwards to `target`, so a test can hand a File to an engine that
// takes ownership while keeping the FaultFile (and its crash controls) itself. `target` must
// outlive the returned object.
[[nodiscard]] std::unique_ptr<File> BorrowFile(File* target);

}  // namespace qzns
