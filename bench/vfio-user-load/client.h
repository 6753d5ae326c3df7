// The host side of a vfio-user connection, as QEMU's vfio-user-pci speaks it: version
// negotiation, guest memory shared by DMA_MAP with the memfd passed as SCM_RIGHTS, BAR and
// config space accesses as REGION_READ / REGION_WRITE messages (doorbells posted: NO_REPLY, as
// QEMU sends BAR writes by default), and MSI-X vectors as eventfds given by SET_IRQS.
// Every queue thread rings its doorbells through the one socket, so a message and its reply
// are one critical section.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "hw/vfio-user/message.h"
#include "util/mutex.h"

namespace qzns::load {

class VfioUserClient {
public:
    // Connects to the server's UNIX socket and negotiates the protocol version.
    bool Connect(const std::string& path, std::string* err);
    // Shares [fd offset, +size) read/write at `iova`.
    bool DmaMap(int fd, uint64_t offset, uint64_t iova, uint64_t size, std::string* err);
    // How many MSI-X vectors the device has (DEVICE_GET_IRQ_INFO); 0 on failure.
    uint32_t MsixVectors(std::string* err);
    // MSI-X vectors [0, fds.size()) raise the eventfds.
    bool SetMsixEventfds(const std::vector<int>& fds, std::string* err);
    bool RegionRead(uint32_t region, uint64_t offset, std::span<uint8_t> out, std::string* err);
    // posted: no reply is asked for, so the caller does not wait for the server.
    bool RegionWrite(uint32_t region, uint64_t offset, std::span<const uint8_t> data, bool posted, std::string* err);

    // ~0 on failure (*err says why).
    uint32_t Read32(uint32_t region, uint64_t offset, std::string* err);
    uint64_t Read64(uint32_t region, uint64_t offset, std::string* err);
    bool Write32(uint32_t region, uint64_t offset, uint32_t v, bool posted, std::string* err);
    bool Write64(uint32_t region, uint64_t offset, uint64_t v, std::string* err);

private:
    // Sends a command and, unless posted, waits for its reply (an error reply gives false).
    bool Call(vfu::Command cmd, vfu::OutMessage& m, bool posted, vfu::Message* reply, std::string* err);

    util::Mutex mu_;
    vfu::UniqueFd sock_ GUARDED_BY(mu_);
    uint16_t next_id_ GUARDED_BY(mu_) = 0;
};

}  // namespace qzns::load
