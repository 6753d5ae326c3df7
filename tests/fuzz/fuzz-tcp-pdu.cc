// libFuzzer target: arbitrary host byte streams into one NVMe/TCP connection engine in front of
// the fake target. Must never crash, hang, hold more memory than TcpConnection::MemoryBound, or
// emit a malformed PDU stream.
//
// Build (the lead wires it into `make fuzz`):
//   clang++ -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -I. \
//       tests/fuzz/fuzz-tcp-pdu.cc nvmf/tcp/pdu.cc nvmf/tcp/connection.cc util/crc32c.cc \
//       -o build/fuzz-tcp-pdu
//   build/fuzz-tcp-pdu -max_len=65536 -timeout=10
//
// Input: byte 0 selects how the stream is delivered (bit0: prepend a valid ICReq, bits 1-2 its
// digest bits, bits 3-5 the receive chunk size, bit6: drain output in small pieces); the rest
// is the host's byte stream.
#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "nvmf/tcp/connection.h"
#include "tests/nvmf/fake-target.h"

using namespace qzns;
using namespace qzns::nvmf;

namespace {

// Checks the controller's output is a sequence of whole PDUs whose plen/hlen are consistent.
void CheckOutputFraming(const std::vector<uint8_t>& out) {
    size_t off = 0;
    while (off < out.size()) {
        if (out.size() - off < 8) __builtin_trap();
        const uint8_t type = out[off];
        const uint8_t hlen = out[off + 2];
        uint32_t plen;
        std::memcpy(&plen, &out[off + 4], 4);  // little-endian host
        if (plen < hlen || hlen < 8) __builtin_trap();
        if (type != 0x01 && type != 0x03 && type != 0x05 && type != 0x07 && type != 0x09)
            __builtin_trap();
        if (type == 0x03 && (plen < 24 || plen > 152)) __builtin_trap();
        if (type != 0x01 && type != 0x03 && hlen != 24) __builtin_trap();  // Linux requires 24
        if (out.size() - off < plen) __builtin_trap();
        off += plen;
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 1) return 0;
    const uint8_t mode = data[0];
    data++;
    size--;

    testing::FakeTarget target;
    tcp::TcpTransportOptions opts;
    opts.max_h2c_data = 8192;
    opts.max_c2h_data = 4096;
    opts.max_transfer = 65536;
    opts.max_outstanding = 16;
    opts.max_buffer_bytes = 4 * 65536;
    opts.max_r2t_length = (mode & 0x80) ? 4096 : 0;
    tcp::TcpStats stats;
    auto mailbox = std::make_shared<tcp::CompletionMailbox>();
    mailbox->SetOwnerThread(std::this_thread::get_id());
    auto conn = std::make_unique<tcp::TcpConnection>(target.NewQueue("fuzz"), opts, mailbox,
                                                     &stats, "fuzz", nullptr);

    std::vector<uint8_t> stream;
    if (mode & 1) {
        uint8_t ic[128] = {};
        ic[2] = 128;
        ic[4] = 128;
        ic[11] = static_cast<uint8_t>((mode >> 1) & 3);
        stream.assign(ic, ic + sizeof(ic));
    }
    stream.insert(stream.end(), data, data + size);

    static const size_t kChunks[8] = {1, 3, 8, 24, 77, 512, 4096, 1 << 20};
    const size_t chunk = kChunks[(mode >> 3) & 7];
    const bool small_drain = (mode & 0x40) != 0;
    std::vector<uint8_t> out;

    auto drain = [&] {
        mailbox->Drain(nullptr);
        while (conn->HasOutput()) {
            iovec iov[16];
            int n = conn->GatherOutput(iov, 16);
            if (n <= 0) __builtin_trap();
            size_t total = 0;
            for (int i = 0; i < n; i++) {
                size_t take = iov[i].iov_len;
                if (small_drain) take = std::min<size_t>(take, 5);
                out.insert(out.end(), static_cast<uint8_t*>(iov[i].iov_base),
                           static_cast<uint8_t*>(iov[i].iov_base) + take);
                total += take;
                if (take < iov[i].iov_len) break;
            }
            conn->ConsumeOutput(total);
            mailbox->Drain(nullptr);
            if (out.size() > (64u << 20)) __builtin_trap();  // output must stay bounded
        }
    };

    for (size_t off = 0; off < stream.size() &&
                         conn->close_mode() != tcp::TcpConnection::CloseMode::kNow;) {
        size_t n = std::min(chunk, stream.size() - off);
        std::span<uint8_t> sink = conn->DirectDataSink();
        if (!sink.empty() && (mode & 0x20)) {
            n = std::min(n, sink.size());
            std::memcpy(sink.data(), stream.data() + off, n);
            conn->DirectDataReceived(n);
        } else {
            conn->Feed(stream.data() + off, n);
        }
        off += n;
        drain();
    }
    drain();
    CheckOutputFraming(out);
    // Whatever the host sent, the connection held no more than the documented bound.
    if (stats.connection_memory_peak.load() > tcp::TcpConnection::MemoryBound(opts)) __builtin_trap();
    conn->Shutdown();
    mailbox->Drain(nullptr);  // completions the target delivers on Disconnect
    if (!conn->Idle()) __builtin_trap();
    return 0;
}
