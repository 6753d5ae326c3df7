// Replays what a Linux 6.1 host sends over NVMe/TCP when it runs `nvme connect` and scans the
// namespaces (drivers/nvme/host/{fabrics,core,zns}.c, see facts §A3-A7), through the
// FabricsTarget seam, and checks every field that host validates before it creates the disks.
#include <bit>
#include <set>
#include <thread>

#include "tests/qtest/nvme-qtest.h"

namespace qzns::nvme::qtest {
namespace {

class LinuxScan : public NvmeQtest {};

std::string Ascii(const std::vector<uint8_t>& b, size_t off, size_t n) { return std::string(b.begin() + off, b.begin() + off + n); }

TEST_F(LinuxScan, ConnectEnableIdentifyAndScanLikeLinux61) {
    // ---- admin queue: Connect (fabrics.c nvmf_connect_admin_queue) ----
    HostQueue admin(*target_);
    Completion c = admin.Run(Connect(0, 31, 5000), ConnectData(0xffff));
    ASSERT_EQ(c.status(), 0);
    uint16_t cntlid = uint16_t(c.dw0() & 0xffff);
    EXPECT_EQ((c.dw0() >> 16) & 3, 0u) << "AUTHREQ set: Linux would start DH-HMAC-CHAP";
    EXPECT_NE(cntlid, 0xffff);

    // ---- nvme_enable_ctrl ----
    c = admin.Run(PropertyGet(0x00, true));
    ASSERT_EQ(c.status(), 0);
    uint64_t cap = c.result64();
    EXPECT_TRUE(cap & (1ull << 43)) << "CAP.CSS bit 43 clear: Linux uses CC.CSS=0 and drops CSI 2 namespaces";
    EXPECT_TRUE(cap & (1ull << 37));
    EXPECT_EQ((cap >> 48) & 0xf, 0u) << "MPSMIN must be 4 KiB";
    EXPECT_EQ((cap >> 59) & 3, 0u) << "CRMS set: Linux would read CRTO";
    uint32_t mqes = uint32_t(cap & 0xffff);
    EXPECT_GE(mqes, 127u);
    uint32_t to = uint32_t((cap >> 24) & 0xff);
    EXPECT_GT(to, 0u);

    uint32_t cc = (6u << 16) | (4u << 20) | (6u << 4);  // IOSQES=6, IOCQES=4, CSS=110b, MPS=0, EN=0
    ASSERT_EQ(admin.Run(PropertySet(0x14, cc)).status(), 0);
    c = admin.Run(PropertyGet(0x14, false));
    ASSERT_EQ(c.status(), 0);
    EXPECT_EQ(c.dw0(), cc);
    EXPECT_EQ(admin.Run(PropertyGet(0x00, true)).result64(), cap);
    ASSERT_EQ(admin.Run(PropertySet(0x14, cc | 1)).status(), 0);
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(500 * (to + 1));
    uint32_t csts = 0;
    while (std::chrono::steady_clock::now() < deadline) {
        c = admin.Run(PropertyGet(0x1c, false));
        ASSERT_EQ(c.status(), 0);
        csts = c.dw0();
        if (csts & 1) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    EXPECT_EQ(csts & 3, 1u) << "CSTS.RDY must be 1 and CFS 0";
    c = admin.Run(PropertyGet(0x08, false));
    EXPECT_EQ(c.dw0(), 0x00020000u);

    // ---- nvme_init_identify: Identify Controller ----
    c = admin.RunC2h(Identify(0x01), 4096);
    ASSERT_EQ(c.status(), 0);
    ASSERT_EQ(c.c2h_len, 4096u);
    const std::vector<uint8_t> id = c.data;
    EXPECT_EQ(R16(id, 78), cntlid) << "Mismatching cntlid";
    EXPECT_EQ(R32(id, 80), 0x00020000u) << "VER should match VS";
    EXPECT_EQ(R8(id, 111), 1) << "CNTRLTYPE: I/O controller";
    EXPECT_NE(R16(id, 320), 0) << "keep-alive support is mandatory for fabrics";
    EXPECT_EQ(R8(id, 512), 0x66);
    EXPECT_EQ(R8(id, 513), 0x44);
    uint16_t maxcmd = R16(id, 514);
    EXPECT_GE(maxcmd, 128) << "MAXCMD must cover the I/O queue size";
    EXPECT_GE(R32(id, 516), 2u) << "NN";
    EXPECT_NE(R32(id, 536) & 3, 0u) << "Mandatory sgls are not supported";
    EXPECT_GE(R32(id, 1792), 4u) << "IOCCSZ";
    EXPECT_EQ(R32(id, 1796), 1u) << "IORCSZ";
    EXPECT_EQ(R16(id, 1800), 0) << "icdoff is not supported";
    EXPECT_EQ(R8(id, 1803), 1) << "MSDBD";
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(id.data() + 768)), kSubNqn) << "SUBNQN";
    EXPECT_EQ(R8(id, 76) & 0x8, 0) << "CMIC.ANA would make Linux read LID 0Ch";
    // A native-multipath head breaks zoned btrfs on Linux 6.1 (see admin-identify.cc).
    EXPECT_EQ(R8(id, 76) & 0x2, 0) << "CMIC.MCTRS would make Linux build a multipath head";
    EXPECT_EQ(R32(id, 96) & (1u << 15), 0u) << "CTRATT.ELBAS would make Linux send Set Features 16h";
    EXPECT_EQ(R32(id, 88), 0u) << "RTD3E";
    EXPECT_EQ(R8(id, 265), 0) << "APSTA";
    EXPECT_EQ(R16(id, 128), 0) << "CRDT1";
    EXPECT_EQ(R32(id, 272), 0u) << "HMPRE";
    EXPECT_TRUE(R8(id, 261) & 0x2) << "LPA: commands supported and effects";
    EXPECT_TRUE(R32(id, 92) & (1u << 27)) << "OAES: zone descriptor changed notices";
    uint16_t oncs = R16(id, 520);
    EXPECT_EQ(oncs & 0x4d, 0x4d) << "ONCS compare, DSM, write zeroes, timestamp";
    EXPECT_TRUE(R8(id, 525) & 1) << "VWC: Linux sends Flush";
    uint8_t mdts = R8(id, 77);
    EXPECT_GT(mdts, 0);
    std::string sn = Ascii(id, 4, 20), mn = Ascii(id, 24, 40), fr = Ascii(id, 64, 8);
    EXPECT_EQ(sn.find('\0'), std::string::npos) << "SN must be space padded";
    EXPECT_EQ(mn.find('\0'), std::string::npos);
    EXPECT_EQ(fr.find('\0'), std::string::npos);
    EXPECT_EQ(sn.substr(0, 8), "QZNS0001");

    // LPA bit 1: effects log for CSI 0.
    c = admin.RunC2h(GetLogPage(0x05, 4096, 0, 0), 4096);
    ASSERT_EQ(c.status(), 0);
    EXPECT_EQ(c.c2h_len, 4096u);
    // ONCS bit 6: Set Features Timestamp with 8 bytes in the capsule.
    std::vector<uint8_t> ts(8, 0);
    W64(ts.data(), 1764000000000ull);
    EXPECT_EQ(admin.Run(Cmd(0x09).cdw(10, 0x0e).sgl(8), ts).status(), 0);
    // hwmon: SMART log.
    c = admin.RunC2h(GetLogPage(0x02, 512, 0xffffffff), 512);
    ASSERT_EQ(c.status(), 0);
    EXPECT_GT(R16(c.data, 1), 273) << "temperature in Kelvin";
    // nvme_set_queue_count: 4 queues.
    c = admin.Run(SetFeatures(0x07, 3 | 3u << 16));
    ASSERT_EQ(c.status(), 0);
    EXPECT_EQ(c.dw0(), 3u | 3u << 16);

    // ---- I/O queues: one connection each, SQSIZE = min(128, MQES+1, MAXCMD) - 1 ----
    uint16_t sqsize = uint16_t(std::min<uint32_t>({128, mqes + 1, maxcmd}) - 1);
    std::vector<std::unique_ptr<HostQueue>> io;
    for (uint16_t q = 1; q <= 4; q++) {
        io.push_back(std::make_unique<HostQueue>(*target_, "192.0.2.1:5000" + std::to_string(q)));
        c = io.back()->Run(Connect(q, sqsize, 0), ConnectData(cntlid));
        ASSERT_EQ(c.status(), 0) << "queue " << q;
        EXPECT_EQ(c.dw0() & 0xffff, cntlid);
        EXPECT_EQ((c.dw0() >> 16) & 3, 0u);
    }

    // ---- live: keep alive, AER (pending forever, CID 31); OAES has no bit Linux enables ----
    EXPECT_EQ(admin.Run(Cmd(0x18)).status(), 0);
    EXPECT_EQ(R32(id, 92) & ((1u << 8) | (1u << 9) | (1u << 11) | (1u << 31)), 0u);
    auto aer = admin.Start(Cmd(0x0c).cid(31));

    // ---- nvme_scan_work ----
    c = admin.RunC2h(Identify(0x06, 0, 0), 4096);
    EXPECT_EQ(c.status(), 0);
    c = admin.RunC2h(Identify(0x02, 0), 4096);
    ASSERT_EQ(c.status(), 0);
    std::vector<uint32_t> nsids;
    for (size_t i = 0; i < 1024 && R32(c.data, 4 * i); i++) nsids.push_back(R32(c.data, 4 * i));
    ASSERT_EQ(nsids, (std::vector<uint32_t>{1, 2})) << "ZNS namespace and its conventional zones";

    bool zns_ctrl_done = false;
    std::set<std::vector<uint8_t>> nguids;
    for (uint32_t nsid : nsids) {
        SCOPED_TRACE("nsid " + std::to_string(nsid));
        // nvme_identify_ns_descs (CSI in CDW11 = 0)
        c = admin.RunC2h(Identify(0x03, nsid, 0), 4096);
        ASSERT_EQ(c.status(), 0);
        int csi = -1;
        for (size_t off = 0; off + 4 <= 4096;) {
            uint8_t nidt = R8(c.data, off), nidl = R8(c.data, off + 1);
            if (nidl == 0) break;
            if (nidt == 4) {
                EXPECT_EQ(nidl, 1);
                csi = R8(c.data, off + 4);
            } else if (nidt == 2) {
                EXPECT_EQ(nidl, 16);
                nguids.insert(std::vector<uint8_t>(c.data.begin() + off + 4, c.data.begin() + off + 20));
            } else if (nidt == 3) {
                EXPECT_EQ(nidl, 16);
            }
            off += 4 + nidl;
        }
        ASSERT_NE(csi, -1) << "no CSI descriptor: Linux skips the namespace with CC.CSS=110b";
        EXPECT_EQ(csi, nsid == 1 ? 2 : 0);

        c = admin.RunC2h(Identify(0x00, nsid), 4096);
        ASSERT_EQ(c.status(), 0);
        auto idns = c.data;
        uint64_t nsze = R64(idns, 0);
        EXPECT_NE(R64(idns, 8), 0u) << "NCAP 0: treated as removed";
        uint8_t flbas = R8(idns, 26) & 0xf;
        uint8_t lbads = R8(idns, 128 + 4 * flbas + 2);
        EXPECT_GE(lbads, 9);
        EXPECT_LE(lbads, 12);
        EXPECT_EQ(R16(idns, 128 + 4 * flbas), 0) << "metadata without PI: capacity 0 on fabrics";
        EXPECT_EQ(R8(idns, 99) & 1, 0) << "NSATTR write protected";

        if (csi == 2) {
            c = admin.RunC2h(GetLogPage(0x05, 4096, 0, 2), 4096);
            ASSERT_EQ(c.status(), 0) << "effects log CSI 2 failure: no namespace";
            uint32_t iocs_7d = R32(c.data, 1024 + 4 * 0x7d);
            EXPECT_TRUE(iocs_7d & 1) << "Zone Append not supported: forced read-only";
            EXPECT_TRUE(R32(c.data, 1024 + 4 * 0x79) & 1);
            EXPECT_TRUE(R32(c.data, 1024 + 4 * 0x7a) & 1);
            for (int op = 0; op < 256; op++)
                EXPECT_EQ(R32(c.data, 1024 + 4 * op) & ~3u, 0u) << "I/O opcode " << op << " has effects Linux warns about";
            EXPECT_EQ(admin.RunC2h(Identify(0x00, nsid), 4096).data, idns);
            if (!zns_ctrl_done) {
                c = admin.RunC2h(Identify(0x06, 0, 2), 4096);
                ASSERT_EQ(c.status(), 0);
                uint8_t zasl = R8(c.data, 0);
                uint64_t max_append_sectors = zasl ? (1ull << (zasl + 3)) : (1ull << (mdts + 3));
                EXPECT_LE(max_append_sectors * 512, 64u << 10) << "ZASL above the image's max append";
                zns_ctrl_done = true;
            }
            c = admin.RunC2h(Identify(0x05, nsid, 2), 4096);
            ASSERT_EQ(c.status(), 0);
            EXPECT_EQ(R16(c.data, 0), 0) << "ZOC != 0 hides the block device";
            uint64_t zsze = R64(c.data, 2816 + 16 * flbas);
            uint64_t zsze_sectors = zsze << (lbads - 9);
            EXPECT_TRUE(std::has_single_bit(zsze_sectors)) << "zone size not a power of two";
            EXPECT_EQ(nsze % zsze, 0u) << "Missing zones";
            EXPECT_EQ(R32(c.data, 8), 3u) << "MOR = max open - 1";
            EXPECT_EQ(R32(c.data, 4), 5u) << "MAR = max active - 1";

            // nvme_ns_report_zones on an I/O queue: ZRA 0, ZRASF 0, partial; until NSZE is covered.
            uint64_t sector = 0, zones_seen = 0;
            while (sector < nsze) {
                uint32_t buflen = 64 + 4 * 64;
                c = io[0]->RunC2h(ZoneRecv(nsid, sector, buflen, 0, 0, true), buflen);
                ASSERT_EQ(c.status(), 0);
                ASSERT_EQ(c.c2h_len, buflen);
                uint64_t nz = R64(c.data, 0);
                ASSERT_GT(nz, 0u);
                for (uint64_t i = 0; i < nz && sector < nsze; i++) {
                    size_t d = 64 + 64 * i;
                    EXPECT_EQ(R8(c.data, d) & 0xf, 2) << "invalid zone type";
                    EXPECT_EQ(R64(c.data, d + 16), sector) << "zones must be contiguous";
                    EXPECT_EQ(R8(c.data, d + 1) >> 4, 1) << "fresh zones are Empty";
                    EXPECT_EQ(R64(c.data, d + 24), sector) << "wp of an Empty zone";
                    EXPECT_EQ(R64(c.data, d + 8), (768u << 10) >> lbads) << "zcap";
                    sector += zsze;
                    zones_seen++;
                }
            }
            EXPECT_EQ(zones_seen, 14u);
        }
        // Partition table scan: the first blocks read as zeros.
        c = io[1]->RunC2h(Rw(0x02, nsid, 0, 8).sgl(8u << lbads), 8u << lbads);
        ASSERT_EQ(c.status(), 0);
        EXPECT_EQ(c.c2h_len, 8u << lbads);
        EXPECT_EQ(c.data, std::vector<uint8_t>(8u << lbads, 0));
    }
    EXPECT_EQ(nguids.size(), 2u) << "duplicate namespace IDs";
    EXPECT_FALSE(aer->Ready()) << "the AER must stay pending";

    // ---- nvme disconnect: I/O sockets close, then CC.SHN = 01b and poll SHST = 10b ----
    io.clear();
    ASSERT_EQ(admin.Run(PropertySet(0x14, cc | 1 | (1u << 14))).status(), 0);
    deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (std::chrono::steady_clock::now() < deadline) {
        csts = admin.Run(PropertyGet(0x1c, false)).dw0();
        if (((csts >> 2) & 3) == 2) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    EXPECT_EQ((csts >> 2) & 3, 2u) << "shutdown did not complete";
    admin.Disconnect();
    ASSERT_TRUE(aer->Wait());
    EXPECT_EQ(aer->Get().sc(), 0x008) << "a pending AER ends as aborted with its queue";
}

}  // namespace
}  // namespace qzns::nvme::qtest
