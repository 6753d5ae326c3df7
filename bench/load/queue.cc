#include "bench/load/queue.h"

#include <time.h>

#include <algorithm>
#include <cstdio>
#include <cstring>

namespace qzns::load {

namespace {

constexpr uint8_t kOpWrite = 0x01, kOpRead = 0x02, kOpZoneSend = 0x79, kOpZoneRecv = 0x7a,
                  kOpAppend = 0x7d;
constexpr uint8_t kZsaReset = 0x04;
// Zone states (descriptor ZS >> 4).
constexpr uint8_t kZsEmpty = 0x1, kZsImpOpen = 0x2, kZsExpOpen = 0x3, kZsClosed = 0x4,
                  kZsReadOnly = 0xd, kZsFull = 0xe, kZsOffline = 0xf;
// Command specific statuses (SCT 1) of the Zoned Namespace Command Set.
constexpr uint16_t kStAbortSqDeleted = 0x008;
constexpr uint16_t kStZoneReadOnly = 0x1ba, kStZoneOffline = 0x1bb, kStZoneInvalidTransition = 0x1bf;

}  // namespace

uint64_t NowNs() {
    timespec t{};
    clock_gettime(CLOCK_MONOTONIC, &t);
    return static_cast<uint64_t>(t.tv_sec) * 1000000000ull + static_cast<uint64_t>(t.tv_nsec);
}

bool QueueWorker::finished() const {
    for (const Zone& z : zones)
        if (z.fault != Fault::kOffline && z.phase != Phase::kDone) return false;
    return true;
}

void QueueWorker::TakeShare(uint32_t index, uint32_t count, uint32_t zones_per_queue, uint64_t seed) {
    if (w_.rw != Rw::kMixed) {
        Zone z;
        z.cap = g_.nsze / count;
        z.zslba = index * z.cap;
        z.phase = Phase::kFill;
        zones.push_back(std::move(z));
        return;
    }
    for (uint32_t i = 0; i < zones_per_queue; i++) {
        Zone z;
        z.zslba = uint64_t{index * zones_per_queue + i} * g_.zsze;
        z.gen = static_cast<uint32_t>(Mix64(seed ^ z.zslba) | 1);
        if (w_.verify_only) z.phase = Phase::kDone;
        zones.push_back(std::move(z));
    }
}

int QueueWorker::FreeSlot() const {
    for (size_t i = 0; i < slots_.size(); i++)
        if (!slots_[i].busy) return static_cast<int>(i);
    return -1;
}

bool QueueWorker::Run(QueuePort& port, const std::atomic<bool>& stop, const std::atomic<bool>& broken) {
    port_ = &port;
    slots_.assign(w_.qd, Slot{});
    busy_ = 0;
    report_busy_ = false;
    scratch_.resize(g_.lba_size);
    for (Zone& z : zones) z.frozen = false;
    last_report_ = 0;  // a report first: it teaches the model the zones it does not know yet
    bool ok = true;
    uint64_t stop_at = 0;
    for (;;) {
        const bool stopping = stop.load(std::memory_order_relaxed) || (w_.verify_only && finished());
        if (broken.load(std::memory_order_relaxed)) {
            ok = false;
            break;
        }
        if (stopping) {
            if (!stop_at) stop_at = NowNs();
            if (busy_ == 0) break;
            if (NowNs() - stop_at > 60'000'000'000ull) {
                fprintf(stderr, "load: %u commands did not complete within 60 s\n", busy_);
                ok = false;
                break;
            }
        } else {
            const uint64_t now = NowNs();
            if (g_.zsze && !report_busy_ && busy_ < slots_.size() &&
                (last_report_ == 0 || now - last_report_ >= uint64_t{w_.report_ms} * 1000000)) {
                IssueReport();
                last_report_ = now;
            }
            // Round-robin over the zones until the queue is full or no zone can take more.
            bool progress = true;
            while (busy_ < slots_.size() && progress) {
                progress = false;
                for (size_t n = 0; n < zones.size() && busy_ < slots_.size(); n++) {
                    cursor_ = (cursor_ + 1) % static_cast<uint32_t>(zones.size());
                    if (Issue(cursor_)) progress = true;
                }
            }
        }
        if (!port.Poll(busy_ ? 100 : 10, *this)) {
            if (!stopping || busy_) {
                fprintf(stderr, "load: queue lost: %s\n", port.error().c_str());
                st_.conn_drops.fetch_add(1);
            }
            ok = false;
            break;
        }
    }
    AbortAll();
    port_ = nullptr;
    return ok;
}

// A command whose outcome the host cannot know: a write or append may or may not have reached
// the medium, so the zone is read back (acknowledged blocks only) and reset before it is written
// again; a reset is sent again.
void QueueWorker::Forget(Slot& s) {
    s.busy = false;
    st_.aborted.fetch_add(1);
    if (s.kind == OpKind::kReport) return;
    Zone& z = zones[s.zone];
    z.inflight--;
    switch (s.kind) {
        case OpKind::kWrite:
            z.write_inflight = false;
            z.reserved -= s.nlb;
            z.dirty = true;
            break;
        case OpKind::kAppend:
            z.appends--;
            z.reserved -= s.nlb;
            z.dirty = true;
            break;
        case OpKind::kReset:
            // The zone may or may not be empty now: its old blocks can no longer be
            // expected, and the reset is sent again.
            z.ResetModel();
            z.phase = Phase::kReset;
            break;
        default:
            break;
    }
}

// Commands whose answer is lost with the connection.
void QueueWorker::AbortAll() {
    for (Slot& s : slots_)
        if (s.busy) Forget(s);
    for (Zone& z : zones) z.frozen = false;
    busy_ = 0;
    report_busy_ = false;
}

bool QueueWorker::IssueBench(uint32_t zi) {
    Zone& z = zones[zi];
    const uint32_t bs = std::max<uint32_t>(1, w_.bs / g_.lba_size);
    const uint64_t slots = z.cap / bs;
    if (slots == 0) return false;
    if (w_.rw == Rw::kSeqWrite) {
        if (z.wp + bs > z.cap) z.wp = 0;
        IssueRw(OpKind::kWrite, zi, z.wp, bs);
        z.wp += bs;
        return true;
    }
    IssueRw(w_.rw == Rw::kRandRead ? OpKind::kRead : OpKind::kWrite, zi, Rand(slots) * bs, bs);
    return true;
}

bool QueueWorker::Issue(uint32_t zi) {
    if (w_.rw != Rw::kMixed) return IssueBench(zi);
    Zone& z = zones[zi];
    if (z.frozen || z.reset_refused || z.fault == Fault::kOffline || z.phase == Phase::kUnknown ||
        z.phase == Phase::kDone)
        return false;
    const uint32_t bs = std::max<uint32_t>(1, w_.bs / g_.lba_size);
    auto random_read = [&]() {
        const uint64_t off = Rand(z.prefix);
        IssueRw(OpKind::kRead, zi, off, static_cast<uint32_t>(std::min<uint64_t>(bs, z.prefix - off)));
        return true;
    };
    // A Read Only zone keeps its data: a sweep in progress finishes (nothing can reset it),
    // otherwise it serves random reads.
    if (z.fault == Fault::kReadOnly && z.phase != Phase::kSweep) {
        if (w_.verify_only || z.prefix == 0 || Rand(100) >= w_.read_pct || z.inflight >= 2) return false;
        return random_read();
    }
    switch (z.phase) {
        case Phase::kReset:
            if (z.inflight) return false;
            IssueReset(zi);
            return true;
        case Phase::kSweep:
            if (z.sweep < z.high) {
                if (z.inflight >= 4) return false;
                const uint32_t n = static_cast<uint32_t>(std::min<uint64_t>(bs, z.high - z.sweep));
                IssueRw(OpKind::kRead, zi, z.sweep, n);
                z.sweep += n;
                return true;
            }
            if (z.inflight) return false;
            if (w_.verify_only || z.fault == Fault::kReadOnly) {
                z.phase = Phase::kDone;
                return false;
            }
            IssueReset(zi);
            return true;
        case Phase::kFill:
            break;
        default:
            return false;
    }
    if (z.dirty) {
        if (z.inflight == 0) {
            z.phase = Phase::kSweep;
            z.sweep = 0;
        }
        return false;
    }
    if (z.prefix > 0 && Rand(100) < w_.read_pct) return random_read();
    if (!z.append_mode) {
        if (!z.write_inflight && z.wp < z.cap) {
            const uint32_t n = static_cast<uint32_t>(std::min<uint64_t>(bs, z.cap - z.wp));
            IssueRw(OpKind::kWrite, zi, z.wp, n);
            return true;
        }
        if (z.wp == z.cap && z.inflight == 0) {
            z.phase = Phase::kSweep;
            z.sweep = 0;
        }
        return false;
    }
    if (z.reserved < z.cap && z.appends < w_.appends_per_zone) {
        const uint32_t n = static_cast<uint32_t>(std::min<uint64_t>(bs, z.cap - z.reserved));
        IssueRw(OpKind::kAppend, zi, 0, n);
        return true;
    }
    if (z.acked == z.cap && z.inflight == 0) {
        z.phase = Phase::kSweep;
        z.sweep = 0;
    }
    return false;
}

void QueueWorker::IssueRw(OpKind kind, uint32_t zi, uint64_t off, uint32_t nlb) {
    const int si = FreeSlot();
    Zone& z = zones[zi];
    Slot& s = slots_[si];
    s = Slot{true, kind, zi, off, nlb, 0, z.gen, 0, NowNs()};
    const uint32_t len = nlb * g_.lba_size;
    uint8_t opcode = kOpRead;
    uint64_t slba = z.zslba + off;
    if (kind == OpKind::kWrite) {
        opcode = kOpWrite;
        s.tag = next_tag_++;
        if (w_.rw == Rw::kMixed) {
            z.write_inflight = true;
            z.reserved += nlb;
        }
    } else if (kind == OpKind::kAppend) {
        opcode = kOpAppend;
        slba = z.zslba;
        s.tag = next_tag_++;
        z.appends++;
        z.reserved += nlb;
    }
    if (next_tag_ == 0 || next_tag_ >= (1u << 31)) next_tag_ = 1;
    z.inflight++;
    busy_++;
    uint8_t sqe[64];
    NewSqe(sqe, opcode, static_cast<uint16_t>(si), g_.nsid);
    PutLe(sqe + 40, slba, 8);
    PutLe(sqe + 48, nlb - 1, 2);
    port_->Submit(sqe, len, kind == OpKind::kRead ? DataDir::kFromController : DataDir::kToController, *this);
}

void QueueWorker::IssueReset(uint32_t zi) {
    const int si = FreeSlot();
    Zone& z = zones[zi];
    z.phase = Phase::kReset;
    slots_[si] = Slot{true, OpKind::kReset, zi, 0, 0, 0, z.gen, 0, NowNs()};
    z.inflight++;
    busy_++;
    uint8_t sqe[64];
    NewSqe(sqe, kOpZoneSend, static_cast<uint16_t>(si), g_.nsid);
    PutLe(sqe + 40, z.zslba, 8);
    sqe[52] = kZsaReset;
    port_->Submit(sqe, 0, DataDir::kNone, *this);
}

// One Report Zones over this queue's zones; the zones quiet now are frozen (no new command)
// until it completes, so what it reports can be compared with the model exactly.
void QueueWorker::IssueReport() {
    const int si = FreeSlot();
    const uint32_t len = 64 + 64 * static_cast<uint32_t>(zones.size());
    slots_[si] = Slot{true, OpKind::kReport, 0, 0, 0, 0, 0, 0, NowNs()};
    busy_++;
    report_busy_ = true;
    report_.clear();
    for (Zone& z : zones) z.frozen = z.inflight == 0;
    uint8_t sqe[64];
    NewSqe(sqe, kOpZoneRecv, static_cast<uint16_t>(si), g_.nsid);
    PutLe(sqe + 40, zones[0].zslba, 8);
    PutLe(sqe + 48, len / 4 - 1, 4);
    PutLe(sqe + 52, 1u << 16, 4);  // ZRA Report Zones, all states, partial report
    port_->Submit(sqe, len, DataDir::kFromController, *this);
}

void QueueWorker::FillSlot(const Slot& s, uint32_t byte_off, uint32_t len, uint8_t* dst) {
    const Zone& z = zones[s.zone];
    const uint32_t bsz = g_.lba_size;
    while (len > 0) {
        const uint32_t i = byte_off / bsz, in = byte_off % bsz;
        const uint32_t n = std::min(len, bsz - in);
        if (in == 0 && n == bsz) {
            FillBlock(dst, bsz, z.zslba, s.gen, s.tag, i);
        } else {
            FillBlock(scratch_.data(), bsz, z.zslba, s.gen, s.tag, i);
            std::memcpy(dst, scratch_.data() + in, n);
        }
        dst += n;
        byte_off += n;
        len -= n;
    }
}

QueueWorker::Slot* QueueWorker::BusySlot(uint16_t cid, const char* what) {
    if (cid < slots_.size() && slots_[cid].busy) return &slots_[cid];
    fprintf(stderr, "load: %s for unknown command %u\n", what, cid);
    st_.unexpected_status[0x7ff].fetch_add(1);
    return nullptr;
}

void QueueWorker::FillData(uint16_t cid, uint32_t off, uint32_t len, uint8_t* dst) {
    if (Slot* s = BusySlot(cid, "data request")) FillSlot(*s, off, len, dst);
}

void QueueWorker::ReadData(uint16_t cid, uint32_t off, const uint8_t* data, uint32_t len) {
    Slot* s = BusySlot(cid, "data");
    if (!s) return;
    if (s->kind == OpKind::kReport) {
        if (report_.size() < off + len) report_.resize(off + len);
        std::memcpy(report_.data() + off, data, len);
        s->received += len;
    } else {
        OnReadData(*s, off, data, len);
    }
}

// Compares each acknowledged block of the range with its pattern as the data arrives; blocks
// the model does not know (an append that was in flight when a connection dropped) are skipped.
void QueueWorker::OnReadData(Slot& s, uint32_t datao, const uint8_t* data, uint32_t len) {
    const Zone& z = zones[s.zone];
    const uint32_t bsz = g_.lba_size;
    s.received += len;
    while (len > 0) {
        const uint32_t i = datao / bsz, in = datao % bsz;
        const uint32_t n = std::min(len, bsz - in);
        const uint64_t off = s.off + i;
        const uint64_t id = off < z.blk.size() ? z.blk[off] : 0;
        if (id != 0) {
            FillBlock(scratch_.data(), bsz, z.zslba, z.gen, BlockTag(id), BlockIdx(id));
            if (std::memcmp(scratch_.data() + in, data, n) != 0) {
                if (st_.verify_failures.fetch_add(1) < 10)
                    fprintf(stderr, "load: VERIFY FAILURE zone 0x%llx lba 0x%llx (gen %u tag %u idx %u)\n",
                            static_cast<unsigned long long>(z.zslba), static_cast<unsigned long long>(z.zslba + off),
                            z.gen, BlockTag(id), BlockIdx(id));
                st_.lost_bytes.fetch_add(n);
            } else {
                st_.bytes_verified.fetch_add(n, std::memory_order_relaxed);
            }
        }
        data += n;
        datao += n;
        len -= n;
    }
}

void QueueWorker::Learn(Zone& z, Fault f) {
    if (z.fault == f) return;
    if (z.fault == Fault::kNone) st_.faults_learned.fetch_add(1);
    z.fault = f;
}

// A failed zone command: the spec's answers for a zone that turned Read Only or Offline are
// expected (the soak injects those faults); anything else is counted as unexpected.
bool QueueWorker::ZoneError(Zone& z, OpKind kind, uint16_t status) {
    const bool modifies = kind == OpKind::kWrite || kind == OpKind::kAppend || kind == OpKind::kReset;
    bool expected = false;
    if (status == kStZoneOffline) {
        Learn(z, Fault::kOffline);
        expected = true;
    } else if (status == kStZoneReadOnly && modifies) {
        Learn(z, z.fault == Fault::kOffline ? Fault::kOffline : Fault::kReadOnly);
        expected = true;
    } else if (status == kStZoneInvalidTransition && kind == OpKind::kReset) {
        if (z.fault == Fault::kNone) {
            z.reset_refused = true;  // judged by the next report
            return true;
        }
        expected = true;
    }
    (expected ? st_.expected_status : st_.unexpected_status)[status].fetch_add(1);
    if (!expected)
        fprintf(stderr, "load: unexpected status 0x%03x for %s in zone 0x%llx\n", status,
                kOpNames[static_cast<int>(kind)], static_cast<unsigned long long>(z.zslba));
    return expected;
}

void QueueWorker::Complete(uint16_t cid, uint16_t status, uint64_t result) {
    Slot* sp = BusySlot(cid, "completion");
    if (!sp) return;
    Slot& s = *sp;
    if (status == kStAbortSqDeleted) {
        // A target that is deleting the queue (its export is being removed, the association
        // torn down) answers what it will not run with this retryable status, as a host's
        // controller reset would: the command counts as lost with the connection.
        busy_--;
        if (s.kind == OpKind::kReport) {
            report_busy_ = false;
            for (Zone& z : zones) z.frozen = false;
        }
        Forget(s);
        return;
    }
    s.busy = false;
    busy_--;
    st_.lat.Add(NowNs() - s.t0);
    st_.ops[static_cast<int>(s.kind)].fetch_add(1, std::memory_order_relaxed);
    if (s.kind == OpKind::kReport) {
        report_busy_ = false;
        if (status != 0) {
            st_.unexpected_status[status].fetch_add(1);
            fprintf(stderr, "load: Report Zones failed: 0x%03x\n", status);
        } else {
            CheckReport();
        }
        for (Zone& z : zones) z.frozen = false;
        return;
    }
    Zone& z = zones[s.zone];
    z.inflight--;
    const uint32_t bytes = s.nlb * g_.lba_size;
    switch (s.kind) {
        case OpKind::kWrite:
            z.write_inflight = false;
            if (status != 0) {
                z.reserved -= s.nlb;
                ZoneError(z, s.kind, status);
                break;
            }
            if (w_.rw == Rw::kMixed) {
                for (uint32_t i = 0; i < s.nlb; i++) z.Record(s.off + i, s.tag, i);
                z.wp += s.nlb;
            }
            st_.bytes_written.fetch_add(bytes, std::memory_order_relaxed);
            break;
        case OpKind::kAppend: {
            z.appends--;
            if (status != 0) {
                z.reserved -= s.nlb;
                ZoneError(z, s.kind, status);
                break;
            }
            // The assigned LBA must be inside the zone, below its capacity, and on blocks no
            // other acknowledged append got.
            bool good = result >= z.zslba && result - z.zslba + s.nlb <= z.cap;
            for (uint32_t i = 0; good && i < s.nlb; i++) good = z.blk[result - z.zslba + i] == 0;
            if (!good) {
                st_.append_lba_errors.fetch_add(1);
                fprintf(stderr, "load: append to zone 0x%llx got LBA 0x%llx (%u blocks), not a free range\n",
                        static_cast<unsigned long long>(z.zslba), static_cast<unsigned long long>(result), s.nlb);
                z.dirty = true;
                break;
            }
            for (uint32_t i = 0; i < s.nlb; i++) z.Record(result - z.zslba + i, s.tag, i);
            st_.bytes_written.fetch_add(bytes, std::memory_order_relaxed);
            break;
        }
        case OpKind::kRead:
            if (status != 0) {
                ZoneError(z, s.kind, status);
            } else if (s.received != bytes) {
                st_.verify_failures.fetch_add(1);
                fprintf(stderr, "load: read of %u bytes returned %u\n", bytes, s.received);
            } else {
                st_.bytes_read.fetch_add(bytes, std::memory_order_relaxed);
            }
            break;
        case OpKind::kReset:
            if (status != 0) {
                ZoneError(z, s.kind, status);
                break;
            }
            z.ResetModel();
            z.phase = Phase::kFill;
            z.append_mode = Rand(100) < w_.append_pct;
            break;
        default:
            break;
    }
}

// Each zone that was quiet for the whole report must look exactly as the model says.
void QueueWorker::CheckReport() {
    if (report_.size() < 64) return;
    const uint64_t nz = GetLe(report_.data(), 8);
    for (uint64_t i = 0; i < nz && 64 + 64 * (i + 1) <= report_.size(); i++) {
        const uint8_t* d = report_.data() + 64 + 64 * i;
        const uint8_t state = d[1] >> 4;
        const uint64_t zcap = GetLe(d + 8, 8), zslba = GetLe(d + 16, 8), wp = GetLe(d + 24, 8);
        if (zslba < zones[0].zslba || !g_.zsze) continue;
        const uint64_t zi = (zslba - zones[0].zslba) / g_.zsze;
        if (zi >= zones.size()) continue;
        Zone& z = zones[zi];
        if (!z.frozen || z.zslba != zslba) continue;
        if (z.reset_refused) {
            z.reset_refused = false;
            const bool faulted = state == kZsOffline || state == kZsReadOnly;
            (faulted ? st_.expected_status : st_.unexpected_status)[kStZoneInvalidTransition].fetch_add(1);
            if (!faulted)
                fprintf(stderr, "load: reset of zone 0x%llx refused, but it is in state %x\n",
                        static_cast<unsigned long long>(zslba), state);
        }
        if (state == kZsOffline || state == kZsReadOnly) {
            Learn(z, state == kZsOffline ? Fault::kOffline : Fault::kReadOnly);
            if (z.phase == Phase::kUnknown) z.phase = Phase::kFill;
            if (z.blk.size() != zcap) {
                z.blk.assign(zcap, 0);
                z.cap = zcap;
            }
            continue;
        }
        if (z.phase == Phase::kUnknown) {
            z.cap = zcap;
            z.blk.assign(zcap, 0);
            // Content left by someone else is unknown: start from a reset.
            z.phase = state == kZsEmpty ? Phase::kFill : Phase::kReset;
            z.append_mode = Rand(100) < w_.append_pct;
            continue;
        }
        if (z.dirty || z.phase == Phase::kReset || z.fault != Fault::kNone) continue;
        st_.report_checks.fetch_add(1, std::memory_order_relaxed);
        const uint64_t written = z.append_mode ? z.reserved : z.wp;
        bool ok = zcap == z.cap;
        if (written == 0) {
            ok = ok && state == kZsEmpty && wp == zslba;
        } else if (written == z.cap) {
            ok = ok && state == kZsFull;
        } else {
            ok = ok && (state == kZsImpOpen || state == kZsExpOpen || state == kZsClosed) && wp == zslba + written;
        }
        if (!ok) {
            st_.report_mismatches.fetch_add(1);
            fprintf(stderr, "load: zone 0x%llx reported state %x wp 0x%llx cap %llu; model: %llu written of %llu\n",
                    static_cast<unsigned long long>(zslba), state, static_cast<unsigned long long>(wp),
                    static_cast<unsigned long long>(zcap), static_cast<unsigned long long>(written),
                    static_cast<unsigned long long>(z.cap));
        }
    }
}

}  // namespace qzns::load
