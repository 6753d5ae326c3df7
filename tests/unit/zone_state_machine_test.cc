// Zone state machine: every (state, action) pair against tables written from the ZNS spec and the
// ZBC conformance behaviour, write/append boundaries, resource limits, recovery, read checks and
// persisted-word validation.
#include "block/zoned/zone-state-machine.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <string>
#include <vector>

namespace qzns {
namespace {

using K = ZoneActionKind;
using S = ZoneState;
using E = ZoneError;

constexpr uint64_t kZsze = 1024;
constexpr uint64_t kZslba = 4 * kZsze;

ZoneGeometry Geo(uint64_t zcap = 768, ZoneType type = ZoneType::kSeqWriteRequired) {
    ZoneGeometry g;
    g.zslba = kZslba;
    g.zsze = kZsze;
    g.zcap = zcap;
    g.type = type;
    return g;
}

ZoneLimits Limits(ZonedProfile p = ZonedProfile::kZns, uint32_t max_open = 0, uint32_t max_active = 0) {
    ZoneLimits l;
    l.profile = p;
    l.max_open = max_open;
    l.max_active = max_active;
    l.zde_supported = true;
    return l;
}

ZoneResources Res(uint32_t io, uint32_t eo, uint32_t c) {
    ZoneResources r;
    r.implicit_open = io;
    r.explicit_open = eo;
    r.closed = c;
    return r;
}

// A typical persisted word for each state.
ZoneWord WordIn(S s, const ZoneGeometry& g, uint8_t attrs = 0) {
    uint64_t wp = g.zslba + 8;
    if (s == S::kEmpty || s == S::kOffline) wp = g.zslba;
    if (s == S::kFull) wp = g.cap_end();
    return ZoneWord::Make(s, g.type, attrs, wp);
}

ZoneResources CountOne(ZoneWord w) { return CountZoneResources(std::span<const ZoneWord>(&w, 1)); }

ZoneAction ActionFor(K k, ZoneWord w, const ZoneGeometry& g) {
    switch (k) {
    case K::kWrite: {
        uint64_t slba = w.wp();
        if (w.state() == S::kFull || w.state() == S::kOffline) slba = g.zslba;
        return ZoneAction::Write(slba, 1);
    }
    case K::kAppend: return ZoneAction::Append(1);
    default: return ZoneAction::Of(k);
    }
}

// Expected outcome tokens: a state name (success, resulting state) or an error.
struct Outcome {
    bool ok;
    S state;
    E error;
};

Outcome Token(const std::string& t) {
    static const std::map<std::string, Outcome> kTokens = {
        {"E", {true, S::kEmpty, E::kNone}},
        {"IO", {true, S::kImplicitOpen, E::kNone}},
        {"EO", {true, S::kExplicitOpen, E::kNone}},
        {"C", {true, S::kClosed, E::kNone}},
        {"RO", {true, S::kReadOnly, E::kNone}},
        {"F", {true, S::kFull, E::kNone}},
        {"OFF", {true, S::kOffline, E::kNone}},
        {"B9", {false, S::kEmpty, E::kZoneIsFull}},
        {"BA", {false, S::kEmpty, E::kZoneIsReadOnly}},
        {"BB", {false, S::kEmpty, E::kZoneIsOffline}},
        {"BF", {false, S::kEmpty, E::kInvalidZoneStateTransition}},
        {"op", {false, S::kEmpty, E::kInvalidOpcode}},
        {"fld", {false, S::kEmpty, E::kInvalidField}},
    };
    auto it = kTokens.find(t);
    EXPECT_NE(it, kTokens.end()) << t;
    return it->second;
}

const S kStates[] = {S::kEmpty, S::kImplicitOpen, S::kExplicitOpen, S::kClosed,
                     S::kReadOnly, S::kFull, S::kOffline};
const K kActions[] = {K::kWrite,   K::kAppend,        K::kOpen,         K::kClose,
                      K::kFinish,  K::kReset,         K::kOffline,      K::kSetZde,
                      K::kImplicitClose, K::kMakeReadOnly, K::kMakeOffline, K::kRecover};
static_assert(sizeof(kActions) / sizeof(kActions[0]) == kZoneActionKindCount);

// Columns:  Write Append Open Close Finish Reset Offline SetZde ImplClose MakeRO MakeOffline Recover
// ZNS 1.1b: §2.1 state machine; §3.4.3 Close (IO/EO -> C, C no-op), Finish (E/IO/EO/C -> F,
// F no-op), Open (E/IO/C -> EO, EO no-op), Reset (IO/EO/C/F -> E, E no-op), Offline (RO -> OFF,
// OFF no-op), Set ZDE (E -> C); everything else Invalid Zone State Transition. Writes: Full ->
// Zone Is Full, RO -> Zone Is Read Only, Offline -> Zone Is Offline. Recover: opened -> Closed.
const std::vector<std::vector<std::string>> kZnsExpected = {
    /* E   */ {"IO", "IO", "EO", "BF", "F", "E", "BF", "C", "BF", "RO", "OFF", "E"},
    /* IO  */ {"IO", "IO", "EO", "C", "F", "E", "BF", "BF", "C", "RO", "OFF", "C"},
    /* EO  */ {"EO", "EO", "EO", "C", "F", "E", "BF", "BF", "BF", "RO", "OFF", "C"},
    /* C   */ {"IO", "IO", "EO", "C", "F", "E", "BF", "BF", "BF", "RO", "OFF", "C"},
    /* RO  */ {"BA", "BA", "BF", "BF", "BF", "BF", "OFF", "BF", "BF", "RO", "OFF", "RO"},
    /* F   */ {"B9", "B9", "BF", "BF", "F", "E", "BF", "BF", "BF", "RO", "OFF", "F"},
    /* OFF */ {"BB", "BB", "BF", "BF", "BF", "BF", "OFF", "BF", "BF", "BF", "OFF", "OFF"},
};

// ZBC (libzbc conformance section 02): CLOSE of EMPTY/FULL and OPEN of FULL are no-ops; no
// append (Invalid Opcode), no Offline Zone or ZDE (Invalid Field).
const std::vector<std::vector<std::string>> kZbcExpected = {
    /* E   */ {"IO", "op", "EO", "E", "F", "E", "fld", "fld", "BF", "RO", "OFF", "E"},
    /* IO  */ {"IO", "op", "EO", "C", "F", "E", "fld", "fld", "C", "RO", "OFF", "C"},
    /* EO  */ {"EO", "op", "EO", "C", "F", "E", "fld", "fld", "BF", "RO", "OFF", "C"},
    /* C   */ {"IO", "op", "EO", "C", "F", "E", "fld", "fld", "BF", "RO", "OFF", "C"},
    /* RO  */ {"BA", "op", "BF", "BF", "BF", "BF", "fld", "fld", "BF", "RO", "OFF", "RO"},
    /* F   */ {"B9", "op", "F", "F", "F", "E", "fld", "fld", "BF", "RO", "OFF", "F"},
    /* OFF */ {"BB", "op", "BF", "BF", "BF", "BF", "fld", "fld", "BF", "BF", "OFF", "OFF"},
};

void CheckTable(ZonedProfile profile, const ZoneGeometry& g,
                const std::vector<std::vector<std::string>>& expected) {
    ZoneLimits limits = Limits(profile);
    ASSERT_EQ(expected.size(), std::size(kStates));
    for (size_t i = 0; i < std::size(kStates); i++) {
        ASSERT_EQ(expected[i].size(), kZoneActionKindCount);
        for (size_t j = 0; j < kZoneActionKindCount; j++) {
            ZoneWord w = WordIn(kStates[i], g);
            ZoneResources res = CountOne(w);
            ZoneDecision d = DecideZoneAction(w, g, res, limits, ActionFor(kActions[j], w, g));
            Outcome want = Token(expected[i][j]);
            SCOPED_TRACE(std::string(ZoneStateName(kStates[i])) + " x " + ZoneActionName(kActions[j]));
            ASSERT_EQ(d.ok(), want.ok) << ZoneErrorName(d.error);
            if (!want.ok) {
                EXPECT_EQ(d.error, want.error) << ZoneErrorName(d.error);
                continue;
            }
            EXPECT_EQ(d.plan.word.state(), want.state) << ZoneStateName(d.plan.word.state());
            EXPECT_EQ(d.plan.word.type(), g.type);
            EXPECT_FALSE(d.plan.close_one_implicit_open);
            // The delta must bring the counters to what a recount of the new word gives.
            EXPECT_EQ(ApplyResourceDelta(res, d.plan.delta), CountOne(d.plan.word));
            EXPECT_TRUE(ValidateZoneWord(d.plan.word, g).ok()) << ValidateZoneWord(d.plan.word, g).message();
            EXPECT_EQ(d.plan.changed, d.plan.word.raw != w.raw);
        }
    }
}

TEST(ZoneStateMachineTest, ZnsStateActionTable) { CheckTable(ZonedProfile::kZns, Geo(), kZnsExpected); }

TEST(ZoneStateMachineTest, ZbcStateActionTable) { CheckTable(ZonedProfile::kZbc, Geo(kZsze), kZbcExpected); }

TEST(ZoneStateMachineTest, SpecNoOpsLeaveTheWordUntouched) {
    ZoneGeometry g = Geo();
    ZoneLimits l = Limits();
    struct Case { S s; K k; } cases[] = {
        {S::kExplicitOpen, K::kOpen}, {S::kClosed, K::kClose}, {S::kFull, K::kFinish},
        {S::kEmpty, K::kReset},       {S::kOffline, K::kOffline}, {S::kReadOnly, K::kMakeReadOnly},
        {S::kOffline, K::kMakeOffline}, {S::kClosed, K::kRecover}, {S::kFull, K::kRecover},
    };
    for (auto c : cases) {
        ZoneWord w = WordIn(c.s, g);
        ZoneDecision d = DecideZoneAction(w, g, CountOne(w), l, ZoneAction::Of(c.k));
        ASSERT_TRUE(d.ok()) << ZoneStateName(c.s) << " " << ZoneActionName(c.k);
        EXPECT_FALSE(d.plan.changed) << ZoneStateName(c.s) << " " << ZoneActionName(c.k);
        EXPECT_EQ(d.plan.delta, ResourceDelta{});
    }
}

// ---------------------------------------------------------------------------------------------
// Writes and appends.

ZoneDecision Do(ZoneWord w, const ZoneGeometry& g, ZoneAction a, ZoneLimits l = Limits()) {
    return DecideZoneAction(w, g, CountOne(w), l, a);
}

TEST(ZoneStateMachineTest, WriteAtWpImplicitlyOpensAndAdvances) {
    ZoneGeometry g = Geo();
    ZoneDecision d = Do(WordIn(S::kEmpty, g), g, ZoneAction::Write(g.zslba, 16));
    ASSERT_TRUE(d.ok());
    EXPECT_EQ(d.plan.word.state(), S::kImplicitOpen);
    EXPECT_EQ(d.plan.word.wp(), g.zslba + 16);
    EXPECT_EQ(d.plan.assigned_lba, g.zslba);
    EXPECT_EQ(d.plan.delta, (ResourceDelta{1, 0, 0}));
    EXPECT_FALSE(d.plan.became_full);
    EXPECT_FALSE(d.plan.discards());

    ZoneWord closed = ZoneWord::Make(S::kClosed, g.type, kZoneAttrZdev, g.zslba + 100);
    d = Do(closed, g, ZoneAction::Write(g.zslba + 100, 4));
    ASSERT_TRUE(d.ok());
    EXPECT_EQ(d.plan.word.state(), S::kImplicitOpen);
    EXPECT_EQ(d.plan.word.attrs(), kZoneAttrZdev);
    EXPECT_EQ(d.plan.delta, (ResourceDelta{1, 0, -1}));
}

TEST(ZoneStateMachineTest, WriteOffTheWpIsInvalidWrite) {
    ZoneGeometry g = Geo();
    ZoneWord w = WordIn(S::kImplicitOpen, g);  // wp = zslba + 8
    EXPECT_EQ(Do(w, g, ZoneAction::Write(g.zslba + 7, 1)).error, E::kZoneInvalidWrite);
    EXPECT_EQ(Do(w, g, ZoneAction::Write(g.zslba + 9, 1)).error, E::kZoneInvalidWrite);
    EXPECT_EQ(Do(w, g, ZoneAction::Write(g.zslba, 1)).error, E::kZoneInvalidWrite);
    EXPECT_EQ(Do(WordIn(S::kEmpty, g), g, ZoneAction::Write(g.zslba + 1, 1)).error, E::kZoneInvalidWrite);
    // Off the wp and past the capacity: the wp check comes first.
    EXPECT_EQ(Do(w, g, ZoneAction::Write(g.zslba + 700, 200)).error, E::kZoneInvalidWrite);
    // In the gap between capacity and zone size: nothing is writable there.
    EXPECT_EQ(Do(w, g, ZoneAction::Write(g.cap_end() + 1, 1)).error, E::kZoneInvalidWrite);
}

TEST(ZoneStateMachineTest, WriteToFullZoneIsZoneIsFullWhereverItStarts) {
    ZoneGeometry g = Geo();
    ZoneWord w = WordIn(S::kFull, g);
    EXPECT_EQ(Do(w, g, ZoneAction::Write(g.zslba, 1)).error, E::kZoneIsFull);
    EXPECT_EQ(Do(w, g, ZoneAction::Write(g.cap_end(), 1)).error, E::kZoneIsFull);
    EXPECT_EQ(Do(w, g, ZoneAction::Append(1)).error, E::kZoneIsFull);
}

TEST(ZoneStateMachineTest, WritePastCapacityIsBoundaryError) {
    ZoneGeometry g = Geo();  // zcap 768 < zsze 1024
    ZoneWord w = ZoneWord::Make(S::kImplicitOpen, g.type, 0, g.cap_end() - 4);
    // Ends past the capacity but inside the zone.
    EXPECT_EQ(Do(w, g, ZoneAction::Write(w.wp(), 5)).error, E::kZoneBoundaryError);
    // Ends past the zone itself.
    EXPECT_EQ(Do(w, g, ZoneAction::Write(w.wp(), 5000)).error, E::kZoneBoundaryError);
    // Absurd length must not wrap around.
    EXPECT_EQ(Do(w, g, ZoneAction::Write(w.wp(), ~0ull)).error, E::kZoneBoundaryError);
    // Capacity == size: crossing into the next zone.
    ZoneGeometry full_cap = Geo(kZsze);
    ZoneWord w2 = ZoneWord::Make(S::kExplicitOpen, full_cap.type, 0, full_cap.end() - 1);
    EXPECT_EQ(Do(w2, full_cap, ZoneAction::Write(w2.wp(), 2)).error, E::kZoneBoundaryError);
    EXPECT_TRUE(Do(w2, full_cap, ZoneAction::Write(w2.wp(), 1)).ok());
}

TEST(ZoneStateMachineTest, WriteReachingCapacityBecomesFull) {
    ZoneGeometry g = Geo();
    ZoneWord io = ZoneWord::Make(S::kImplicitOpen, g.type, kZoneAttrFzr | kZoneAttrZdev, g.cap_end() - 4);
    ZoneDecision d = Do(io, g, ZoneAction::Write(io.wp(), 4));
    ASSERT_TRUE(d.ok());
    EXPECT_TRUE(d.plan.became_full);
    EXPECT_EQ(d.plan.word.state(), S::kFull);
    EXPECT_EQ(d.plan.word.wp(), g.cap_end());
    EXPECT_EQ(d.plan.word.attrs(), kZoneAttrZdev);  // FZR no longer meaningful
    EXPECT_EQ(d.plan.delta, (ResourceDelta{-1, 0, 0}));

    ZoneWord eo = ZoneWord::Make(S::kExplicitOpen, g.type, 0, g.zslba + 10);
    d = Do(eo, g, ZoneAction::Write(eo.wp(), g.zcap - 10));
    ASSERT_TRUE(d.ok());
    EXPECT_EQ(d.plan.word.state(), S::kFull);
    EXPECT_EQ(d.plan.delta, (ResourceDelta{0, -1, 0}));

    // One write filling an Empty zone passes through Implicitly Opened: it needs the resources
    // but leaves the counters unchanged.
    d = Do(WordIn(S::kEmpty, g), g, ZoneAction::Write(g.zslba, g.zcap));
    ASSERT_TRUE(d.ok());
    EXPECT_EQ(d.plan.word.state(), S::kFull);
    EXPECT_EQ(d.plan.delta, ResourceDelta{});
    EXPECT_EQ(DecideZoneAction(WordIn(S::kEmpty, g), g, Res(0, 1, 0), Limits(ZonedProfile::kZns, 4, 1),
                               ZoneAction::Write(g.zslba, g.zcap)).error,
              E::kTooManyActiveZones);
}

TEST(ZoneStateMachineTest, WriteOutsideTheZoneIsInvalidField) {
    ZoneGeometry g = Geo();
    ZoneWord w = WordIn(S::kEmpty, g);
    EXPECT_EQ(Do(w, g, ZoneAction::Write(g.zslba - 1, 1)).error, E::kInvalidField);
    EXPECT_EQ(Do(w, g, ZoneAction::Write(g.end(), 1)).error, E::kInvalidField);
    EXPECT_EQ(Do(w, g, ZoneAction::Write(g.zslba, 0)).error, E::kInvalidField);
}

TEST(ZoneStateMachineTest, WriteToReadOnlyAndOfflineZones) {
    ZoneGeometry g = Geo();
    EXPECT_EQ(Do(WordIn(S::kReadOnly, g), g, ZoneAction::Write(g.zslba + 8, 1)).error, E::kZoneIsReadOnly);
    EXPECT_EQ(Do(WordIn(S::kReadOnly, g), g, ZoneAction::Write(g.zslba, 1)).error, E::kZoneIsReadOnly);
    EXPECT_EQ(Do(WordIn(S::kOffline, g), g, ZoneAction::Write(g.zslba, 1)).error, E::kZoneIsOffline);
    EXPECT_EQ(Do(WordIn(S::kOffline, g), g, ZoneAction::Append(1)).error, E::kZoneIsOffline);
}

TEST(ZoneStateMachineTest, AppendReturnsAssignedLba) {
    ZoneGeometry g = Geo();
    ZoneWord w = ZoneWord::Make(S::kImplicitOpen, g.type, 0, g.zslba + 40);
    ZoneDecision d = Do(w, g, ZoneAction::Append(8));
    ASSERT_TRUE(d.ok());
    EXPECT_EQ(d.plan.assigned_lba, g.zslba + 40);
    EXPECT_EQ(d.plan.word.wp(), g.zslba + 48);

    d = Do(WordIn(S::kEmpty, g), g, ZoneAction::Append(g.zcap));
    ASSERT_TRUE(d.ok());
    EXPECT_EQ(d.plan.assigned_lba, g.zslba);
    EXPECT_TRUE(d.plan.became_full);
}

TEST(ZoneStateMachineTest, AppendBeyondCapacityIsBoundaryError) {
    ZoneGeometry g = Geo();
    ZoneWord w = ZoneWord::Make(S::kClosed, g.type, 0, g.cap_end() - 3);
    EXPECT_EQ(Do(w, g, ZoneAction::Append(4)).error, E::kZoneBoundaryError);
    EXPECT_TRUE(Do(w, g, ZoneAction::Append(3)).ok());
}

TEST(ZoneStateMachineTest, AppendLargerThanZaslIsInvalidField) {
    ZoneGeometry g = Geo();
    ZoneLimits l = Limits();
    l.max_append = 256;
    EXPECT_TRUE(Do(WordIn(S::kEmpty, g), g, ZoneAction::Append(256), l).ok());
    EXPECT_EQ(Do(WordIn(S::kEmpty, g), g, ZoneAction::Append(257), l).error, E::kInvalidField);
    // Field checks precede state checks.
    EXPECT_EQ(Do(WordIn(S::kFull, g), g, ZoneAction::Append(257), l).error, E::kInvalidField);
    EXPECT_EQ(Do(WordIn(S::kEmpty, g), g, ZoneAction::Append(0), l).error, E::kInvalidField);
}

TEST(ZoneStateMachineTest, ZbcHasNoAppendOfflineOrZde) {
    ZoneGeometry g = Geo(kZsze);
    ZoneLimits l = Limits(ZonedProfile::kZbc);
    EXPECT_EQ(Do(WordIn(S::kEmpty, g), g, ZoneAction::Append(1), l).error, E::kInvalidOpcode);
    EXPECT_EQ(Do(WordIn(S::kReadOnly, g), g, ZoneAction::Offline(), l).error, E::kInvalidField);
    EXPECT_EQ(Do(WordIn(S::kEmpty, g), g, ZoneAction::SetZde(), l).error, E::kInvalidField);
}

// ---------------------------------------------------------------------------------------------
// Management plans.

TEST(ZoneStateMachineTest, ResetFreesTheZoneAndClearsAttributes) {
    ZoneGeometry g = Geo();
    ZoneWord w = ZoneWord::Make(S::kFull, g.type, kZoneAttrZdev | kZoneAttrZfc | kZoneAttrRzr, g.cap_end());
    ZoneDecision d = Do(w, g, ZoneAction::Reset());
    ASSERT_TRUE(d.ok());
    EXPECT_EQ(d.plan.word.raw, ZoneWord::Make(S::kEmpty, g.type, 0, g.zslba).raw);
    EXPECT_EQ(d.plan.discard_begin, g.zslba);
    EXPECT_EQ(d.plan.discard_end, g.end());
    EXPECT_TRUE(d.plan.clear_zde);

    // Reset of an Empty zone is a no-op on the word but still frees stale storage.
    d = Do(WordIn(S::kEmpty, g), g, ZoneAction::Reset());
    ASSERT_TRUE(d.ok());
    EXPECT_FALSE(d.plan.changed);
    EXPECT_TRUE(d.plan.discards());
    EXPECT_FALSE(d.plan.clear_zde);

    w = ZoneWord::Make(S::kClosed, g.type, 0, g.zslba + 50);
    d = Do(w, g, ZoneAction::Reset());
    ASSERT_TRUE(d.ok());
    EXPECT_EQ(d.plan.delta, (ResourceDelta{0, 0, -1}));
}

TEST(ZoneStateMachineTest, FinishMovesWpToCapacityAndDiscardsBeyondOldWp) {
    ZoneGeometry g = Geo();
    ZoneWord w = ZoneWord::Make(S::kExplicitOpen, g.type, kZoneAttrFzr, g.zslba + 100);
    ZoneDecision d = Do(w, g, ZoneAction::Finish());
    ASSERT_TRUE(d.ok());
    EXPECT_EQ(d.plan.word.state(), S::kFull);
    EXPECT_EQ(d.plan.word.wp(), g.cap_end());
    EXPECT_EQ(d.plan.word.attrs(), 0);
    EXPECT_EQ(d.plan.discard_begin, g.zslba + 100);
    EXPECT_EQ(d.plan.discard_end, g.end());
    EXPECT_EQ(d.plan.delta, (ResourceDelta{0, -1, 0}));
}

TEST(ZoneStateMachineTest, FinishOfEmptyTakesNoResourceInZns) {
    ZoneGeometry g = Geo();
    // Every resource taken, by explicitly opened zones: Finish of Empty still succeeds.
    ZoneDecision d = DecideZoneAction(WordIn(S::kEmpty, g), g, Res(0, 2, 0), Limits(ZonedProfile::kZns, 2, 2),
                                      ZoneAction::Finish());
    ASSERT_TRUE(d.ok());
    EXPECT_EQ(d.plan.word.state(), S::kFull);
    EXPECT_EQ(d.plan.delta, ResourceDelta{});
    EXPECT_EQ(d.plan.discard_begin, g.zslba);
}

TEST(ZoneStateMachineTest, FinishOfEmptyOrClosedNeedsAnOpenResourceInZbc) {
    ZoneGeometry g = Geo(kZsze);
    ZoneLimits l = Limits(ZonedProfile::kZbc, 2, 0);
    EXPECT_EQ(DecideZoneAction(WordIn(S::kEmpty, g), g, Res(0, 2, 0), l, ZoneAction::Finish()).error,
              E::kTooManyOpenZones);
    EXPECT_EQ(DecideZoneAction(WordIn(S::kClosed, g), g, Res(0, 2, 1), l, ZoneAction::Finish()).error,
              E::kTooManyOpenZones);
    // With an implicitly opened zone around, ZBC closes it to make room.
    ZoneDecision d = DecideZoneAction(WordIn(S::kEmpty, g), g, Res(1, 1, 0), l, ZoneAction::Finish());
    ASSERT_TRUE(d.ok());
    EXPECT_TRUE(d.plan.close_one_implicit_open);
    EXPECT_EQ(d.plan.word.state(), S::kFull);
    // Open and full zones finish without a resource.
    EXPECT_TRUE(DecideZoneAction(WordIn(S::kExplicitOpen, g), g, Res(0, 2, 0), l, ZoneAction::Finish()).ok());
}

TEST(ZoneStateMachineTest, SetZdeClosesAnEmptyZoneWithZdev) {
    ZoneGeometry g = Geo();
    ZoneDecision d = Do(WordIn(S::kEmpty, g), g, ZoneAction::SetZde());
    ASSERT_TRUE(d.ok());
    EXPECT_EQ(d.plan.word.state(), S::kClosed);
    EXPECT_EQ(d.plan.word.wp(), g.zslba);
    EXPECT_EQ(d.plan.word.attrs(), kZoneAttrZdev);
    EXPECT_TRUE(d.plan.store_zde);
    EXPECT_EQ(d.plan.delta, (ResourceDelta{0, 0, 1}));
    // Needs an active resource, not an open one.
    EXPECT_EQ(DecideZoneAction(WordIn(S::kEmpty, g), g, Res(0, 0, 3), Limits(ZonedProfile::kZns, 1, 3),
                               ZoneAction::SetZde()).error,
              E::kTooManyActiveZones);
    EXPECT_TRUE(DecideZoneAction(WordIn(S::kEmpty, g), g, Res(0, 1, 0), Limits(ZonedProfile::kZns, 1, 3),
                                 ZoneAction::SetZde()).ok());
    // Without ZDES it is an invalid field.
    ZoneLimits no_zde = Limits();
    no_zde.zde_supported = false;
    EXPECT_EQ(Do(WordIn(S::kEmpty, g), g, ZoneAction::SetZde(), no_zde).error, E::kInvalidField);
}

TEST(ZoneStateMachineTest, OfflineFreesStorageAndClearsAttributes) {
    ZoneGeometry g = Geo();
    ZoneWord ro = ZoneWord::Make(S::kReadOnly, g.type, kZoneAttrZdev, g.zslba + 20);
    ZoneDecision d = Do(ro, g, ZoneAction::Offline());
    ASSERT_TRUE(d.ok());
    EXPECT_EQ(d.plan.word.raw, ZoneWord::Make(S::kOffline, g.type, 0, g.zslba).raw);
    EXPECT_EQ(d.plan.discard_begin, g.zslba);
    EXPECT_EQ(d.plan.discard_end, g.end());
    EXPECT_TRUE(d.plan.clear_zde);

    ZoneWord io = WordIn(S::kImplicitOpen, g);
    d = Do(io, g, ZoneAction::MakeOffline());
    ASSERT_TRUE(d.ok());
    EXPECT_EQ(d.plan.word.state(), S::kOffline);
    EXPECT_EQ(d.plan.delta, (ResourceDelta{-1, 0, 0}));
    EXPECT_TRUE(d.plan.discards());
}

TEST(ZoneStateMachineTest, MakeReadOnlyKeepsWpAndReleasesResources) {
    ZoneGeometry g = Geo();
    ZoneWord c = ZoneWord::Make(S::kClosed, g.type, kZoneAttrZdev, g.zslba + 33);
    ZoneDecision d = Do(c, g, ZoneAction::MakeReadOnly());
    ASSERT_TRUE(d.ok());
    EXPECT_EQ(d.plan.word.state(), S::kReadOnly);
    EXPECT_EQ(d.plan.word.wp(), g.zslba + 33);
    EXPECT_EQ(d.plan.word.attrs(), kZoneAttrZdev);
    EXPECT_EQ(d.plan.delta, (ResourceDelta{0, 0, -1}));
    EXPECT_FALSE(d.plan.discards());
}

TEST(ZoneStateMachineTest, ZbcCloseWithNothingWrittenEmptiesTheZone) {
    ZoneGeometry g = Geo(kZsze);
    ZoneLimits zbc = Limits(ZonedProfile::kZbc);
    ZoneWord eo = ZoneWord::Make(S::kExplicitOpen, g.type, 0, g.zslba);
    ZoneDecision d = Do(eo, g, ZoneAction::Close(), zbc);
    ASSERT_TRUE(d.ok());
    EXPECT_EQ(d.plan.word.state(), S::kEmpty);
    EXPECT_EQ(d.plan.delta, (ResourceDelta{0, -1, 0}));
    // ZNS keeps it Closed (ZNS §3.4.3 Close Zone: opened -> ZSC).
    d = Do(eo, g, ZoneAction::Close(), Limits());
    ASSERT_TRUE(d.ok());
    EXPECT_EQ(d.plan.word.state(), S::kClosed);
    EXPECT_EQ(d.plan.delta, (ResourceDelta{0, -1, 1}));
}

// ---------------------------------------------------------------------------------------------
// Resource limits.

TEST(ZoneStateMachineTest, ImplicitOpenBeyondMaxActiveIsTooManyActive) {
    ZoneGeometry g = Geo();
    ZoneLimits l = Limits(ZonedProfile::kZns, 0, 3);
    EXPECT_EQ(DecideZoneAction(WordIn(S::kEmpty, g), g, Res(1, 1, 1), l, ZoneAction::Write(g.zslba, 1)).error,
              E::kTooManyActiveZones);
    EXPECT_EQ(DecideZoneAction(WordIn(S::kEmpty, g), g, Res(1, 1, 1), l, ZoneAction::Append(1)).error,
              E::kTooManyActiveZones);
    // A Closed zone already holds its active resource.
    ZoneWord c = WordIn(S::kClosed, g);
    EXPECT_TRUE(DecideZoneAction(c, g, Res(1, 1, 1), l, ZoneAction::Write(c.wp(), 1)).ok());
    EXPECT_TRUE(DecideZoneAction(WordIn(S::kEmpty, g), g, Res(1, 0, 1), l, ZoneAction::Write(g.zslba, 1)).ok());
}

TEST(ZoneStateMachineTest, ActiveLimitIsCheckedBeforeOpenLimit) {
    ZoneGeometry g = Geo();
    ZoneLimits l = Limits(ZonedProfile::kZns, 2, 2);
    EXPECT_EQ(DecideZoneAction(WordIn(S::kEmpty, g), g, Res(0, 2, 0), l, ZoneAction::Open()).error,
              E::kTooManyActiveZones);
    EXPECT_EQ(DecideZoneAction(WordIn(S::kEmpty, g), g, Res(0, 2, 0), l, ZoneAction::Write(g.zslba, 1)).error,
              E::kTooManyActiveZones);
}

TEST(ZoneStateMachineTest, ImplicitOpenClosesAnImplicitlyOpenedZoneWhenOpenIsFull) {
    ZoneGeometry g = Geo();
    ZoneLimits l = Limits(ZonedProfile::kZns, 2, 0);
    ZoneDecision d = DecideZoneAction(WordIn(S::kEmpty, g), g, Res(1, 1, 0), l, ZoneAction::Write(g.zslba, 1));
    ASSERT_TRUE(d.ok());
    EXPECT_TRUE(d.plan.close_one_implicit_open);
    EXPECT_EQ(d.plan.delta, (ResourceDelta{1, 0, 0}));
    EXPECT_TRUE(MustCloseImplicitToOpen(Res(1, 1, 0), l));

    // The victim's own plan, then this one: counters end where a recount puts them.
    ZoneGeometry vg = g;
    vg.zslba += kZsze;
    ZoneWord victim = ZoneWord::Make(S::kImplicitOpen, vg.type, 0, vg.zslba + 5);
    ZoneDecision vd = DecideZoneAction(victim, vg, Res(1, 1, 0), l, ZoneAction::ImplicitClose());
    ASSERT_TRUE(vd.ok());
    EXPECT_EQ(vd.plan.word.state(), S::kClosed);
    ZoneResources after = ApplyResourceDelta(ApplyResourceDelta(Res(1, 1, 0), vd.plan.delta), d.plan.delta);
    EXPECT_EQ(after, Res(1, 1, 1));
    EXPECT_LE(after.open(), l.max_open);

    // Opened zones needing no new resource never evict.
    ZoneWord io = WordIn(S::kImplicitOpen, g);
    d = DecideZoneAction(io, g, Res(1, 1, 0), l, ZoneAction::Write(io.wp(), 1));
    ASSERT_TRUE(d.ok());
    EXPECT_FALSE(d.plan.close_one_implicit_open);

    // Closed zone reopened implicitly evicts too.
    ZoneWord c = WordIn(S::kClosed, g);
    d = DecideZoneAction(c, g, Res(2, 0, 1), l, ZoneAction::Write(c.wp(), 1));
    ASSERT_TRUE(d.ok());
    EXPECT_TRUE(d.plan.close_one_implicit_open);
}

TEST(ZoneStateMachineTest, ImplicitOpenWithOnlyExplicitlyOpenedZonesIsTooManyOpen) {
    ZoneGeometry g = Geo();
    ZoneLimits l = Limits(ZonedProfile::kZns, 2, 0);
    EXPECT_EQ(DecideZoneAction(WordIn(S::kEmpty, g), g, Res(0, 2, 0), l, ZoneAction::Write(g.zslba, 1)).error,
              E::kTooManyOpenZones);
    EXPECT_FALSE(MustCloseImplicitToOpen(Res(0, 2, 0), l));
    EXPECT_FALSE(MustCloseImplicitToOpen(Res(1, 0, 0), l));
    EXPECT_FALSE(MustCloseImplicitToOpen(Res(5, 5, 0), Limits()));
}

TEST(ZoneStateMachineTest, ExplicitOpenNeverEvictsInZns) {
    ZoneGeometry g = Geo();
    ZoneLimits l = Limits(ZonedProfile::kZns, 2, 0);
    EXPECT_EQ(DecideZoneAction(WordIn(S::kEmpty, g), g, Res(2, 0, 0), l, ZoneAction::Open()).error,
              E::kTooManyOpenZones);
    EXPECT_EQ(DecideZoneAction(WordIn(S::kClosed, g), g, Res(1, 1, 1), l, ZoneAction::Open()).error,
              E::kTooManyOpenZones);
    // Implicitly -> explicitly opened takes nothing new.
    ZoneDecision d = DecideZoneAction(WordIn(S::kImplicitOpen, g), g, Res(1, 1, 0), l, ZoneAction::Open());
    ASSERT_TRUE(d.ok());
    EXPECT_EQ(d.plan.delta, (ResourceDelta{-1, 1, 0}));
}

TEST(ZoneStateMachineTest, ExplicitOpenEvictsInZbc) {
    ZoneGeometry g = Geo(kZsze);
    ZoneLimits l = Limits(ZonedProfile::kZbc, 2, 0);
    ZoneDecision d = DecideZoneAction(WordIn(S::kEmpty, g), g, Res(1, 1, 0), l, ZoneAction::Open());
    ASSERT_TRUE(d.ok());
    EXPECT_TRUE(d.plan.close_one_implicit_open);
    EXPECT_EQ(DecideZoneAction(WordIn(S::kEmpty, g), g, Res(0, 2, 0), l, ZoneAction::Open()).error,
              E::kTooManyOpenZones);
}

TEST(ZoneStateMachineTest, OpenOfClosedNeedsOnlyAnOpenResource) {
    ZoneGeometry g = Geo();
    ZoneLimits l = Limits(ZonedProfile::kZns, 3, 2);
    ZoneDecision d = DecideZoneAction(WordIn(S::kClosed, g), g, Res(0, 1, 1), l, ZoneAction::Open());
    ASSERT_TRUE(d.ok());
    EXPECT_EQ(d.plan.delta, (ResourceDelta{0, 1, -1}));
    EXPECT_EQ(DecideZoneAction(WordIn(S::kEmpty, g), g, Res(0, 1, 1), l, ZoneAction::Open()).error,
              E::kTooManyActiveZones);
}

TEST(ZoneStateMachineTest, WritesToOpenedZonesIgnoreFullLimits) {
    ZoneGeometry g = Geo();
    ZoneLimits l = Limits(ZonedProfile::kZns, 1, 1);
    ZoneWord eo = WordIn(S::kExplicitOpen, g);
    EXPECT_TRUE(DecideZoneAction(eo, g, Res(0, 1, 0), l, ZoneAction::Write(eo.wp(), 1)).ok());
    EXPECT_TRUE(DecideZoneAction(eo, g, Res(0, 1, 0), l, ZoneAction::Append(1)).ok());
}

TEST(ZoneStateMachineTest, SelectAllAppliesToTheSpecStates) {
    struct Row { K k; std::vector<S> states; } rows[] = {
        {K::kClose, {S::kImplicitOpen, S::kExplicitOpen}},
        {K::kFinish, {S::kImplicitOpen, S::kExplicitOpen, S::kClosed}},
        {K::kOpen, {S::kClosed}},
        {K::kReset, {S::kImplicitOpen, S::kExplicitOpen, S::kClosed, S::kFull}},
        {K::kOffline, {S::kReadOnly}},
        {K::kSetZde, {}},
        {K::kWrite, {}},
        {K::kMakeOffline, {}},
    };
    for (const Row& r : rows) {
        for (S s : {S::kNotWritePointer, S::kEmpty, S::kImplicitOpen, S::kExplicitOpen, S::kClosed,
                    S::kReadOnly, S::kFull, S::kOffline}) {
            bool want = std::find(r.states.begin(), r.states.end(), s) != r.states.end();
            EXPECT_EQ(AppliesToSelectAll(r.k, s), want) << ZoneActionName(r.k) << " " << ZoneStateName(s);
        }
    }
}

TEST(ZoneStateMachineTest, SelectAllOpenIsAllOrNothing) {
    ZoneLimits zns = Limits(ZonedProfile::kZns, 4, 0);
    EXPECT_EQ(CheckSelectAllOpen(Res(1, 1, 2), zns), E::kNone);
    EXPECT_EQ(CheckSelectAllOpen(Res(1, 1, 3), zns), E::kTooManyOpenZones);
    EXPECT_EQ(CheckSelectAllOpen(Res(9, 9, 9), Limits()), E::kNone);
    ZoneLimits zbc = Limits(ZonedProfile::kZbc, 4, 0);
    EXPECT_EQ(CheckSelectAllOpen(Res(3, 1, 3), zbc), E::kNone);  // implicit ones get closed
    EXPECT_EQ(CheckSelectAllOpen(Res(0, 2, 3), zbc), E::kTooManyOpenZones);
}

// ---------------------------------------------------------------------------------------------
// Recovery and counters.

TEST(ZoneStateMachineTest, RecoveryClosesOpenedZones) {
    ZoneGeometry g = Geo();
    for (ZonedProfile p : {ZonedProfile::kZns, ZonedProfile::kZbc}) {
        ZoneLimits l = Limits(p);
        ZoneDecision d = Do(ZoneWord::Make(S::kImplicitOpen, g.type, 0, g.zslba + 9), g, ZoneAction::Recover(), l);
        ASSERT_TRUE(d.ok());
        EXPECT_EQ(d.plan.word.raw, ZoneWord::Make(S::kClosed, g.type, 0, g.zslba + 9).raw);
        EXPECT_EQ(d.plan.delta, (ResourceDelta{-1, 0, 1}));

        // Opened with nothing written and no extension: Empty.
        d = Do(ZoneWord::Make(S::kExplicitOpen, g.type, 0, g.zslba), g, ZoneAction::Recover(), l);
        ASSERT_TRUE(d.ok());
        EXPECT_EQ(d.plan.word.raw, ZoneWord::Make(S::kEmpty, g.type, 0, g.zslba).raw);
        EXPECT_EQ(d.plan.delta, (ResourceDelta{0, -1, 0}));
    }
    // A descriptor extension keeps it Closed.
    ZoneDecision d = Do(ZoneWord::Make(S::kExplicitOpen, g.type, kZoneAttrZdev, g.zslba), g, ZoneAction::Recover());
    ASSERT_TRUE(d.ok());
    EXPECT_EQ(d.plan.word.state(), S::kClosed);
    EXPECT_EQ(d.plan.word.attrs(), kZoneAttrZdev);
}

TEST(ZoneStateMachineTest, RecoverWholeDeviceAndRecount) {
    std::vector<ZoneGeometry> geos;
    std::vector<ZoneWord> words;
    for (uint64_t i = 0; i < 9; i++) {
        ZoneGeometry g;
        g.zslba = i * kZsze;
        g.zsze = kZsze;
        g.zcap = i == 0 ? kZsze : 768;
        g.type = i == 0 ? ZoneType::kConventional : ZoneType::kSeqWriteRequired;
        geos.push_back(g);
    }
    words.push_back(InitialZoneWord(geos[0]));
    words.push_back(InitialZoneWord(geos[1]));
    words.push_back(ZoneWord::Make(S::kImplicitOpen, ZoneType::kSeqWriteRequired, 0, geos[2].zslba + 3));
    words.push_back(ZoneWord::Make(S::kExplicitOpen, ZoneType::kSeqWriteRequired, 0, geos[3].zslba));
    words.push_back(ZoneWord::Make(S::kExplicitOpen, ZoneType::kSeqWriteRequired, 0, geos[4].zslba + 7));
    words.push_back(ZoneWord::Make(S::kClosed, ZoneType::kSeqWriteRequired, kZoneAttrZdev, geos[5].zslba));
    words.push_back(ZoneWord::Make(S::kFull, ZoneType::kSeqWriteRequired, 0, geos[6].cap_end()));
    words.push_back(ZoneWord::Make(S::kReadOnly, ZoneType::kSeqWriteRequired, 0, geos[7].zslba + 1));
    words.push_back(ZoneWord::Make(S::kOffline, ZoneType::kSeqWriteRequired, 0, geos[8].zslba));

    ZoneResources res = CountZoneResources(words);
    EXPECT_EQ(res, Res(1, 2, 1));
    for (size_t i = 0; i < words.size(); i++) {
        ASSERT_TRUE(ValidateZoneWord(words[i], geos[i]).ok()) << i << ": " << ValidateZoneWord(words[i], geos[i]).message();
        ZoneDecision d = DecideZoneAction(words[i], geos[i], res, Limits(), ZoneAction::Recover());
        ASSERT_TRUE(d.ok()) << i;
        res = ApplyResourceDelta(res, d.plan.delta);
        words[i] = d.plan.word;
        EXPECT_TRUE(ValidateZoneWord(words[i], geos[i]).ok()) << i;
    }
    EXPECT_EQ(res, CountZoneResources(words));
    EXPECT_EQ(res, Res(0, 0, 3));
    EXPECT_EQ(words[3].state(), S::kEmpty);
    EXPECT_EQ(words[0].state(), S::kNotWritePointer);
}

// ---------------------------------------------------------------------------------------------
// Conventional zones.

TEST(ZoneStateMachineTest, ConventionalZonesAreAPlainDisk) {
    ZoneGeometry g = Geo(kZsze, ZoneType::kConventional);
    ZoneWord w = InitialZoneWord(g);
    for (ZonedProfile p : {ZonedProfile::kZns, ZonedProfile::kZbc}) {
        ZoneLimits l = Limits(p, 1, 1);
        ZoneDecision d = DecideZoneAction(w, g, Res(0, 1, 0), l, ZoneAction::Write(g.zslba + 100, 8));
        ASSERT_TRUE(d.ok());
        EXPECT_FALSE(d.plan.changed);
        EXPECT_EQ(d.plan.delta, ResourceDelta{});
        EXPECT_FALSE(d.plan.spills_into_next_zone);
        // Rewriting the same LBA is fine.
        EXPECT_TRUE(DecideZoneAction(w, g, Res(0, 1, 0), l, ZoneAction::Write(g.zslba + 100, 8)).ok());
        d = DecideZoneAction(w, g, Res(0, 1, 0), l, ZoneAction::Write(g.end() - 1, 8));
        ASSERT_TRUE(d.ok());
        EXPECT_TRUE(d.plan.spills_into_next_zone);
        for (K k : {K::kOpen, K::kClose, K::kFinish, K::kReset, K::kOffline, K::kSetZde}) {
            EXPECT_EQ(DecideZoneAction(w, g, Res(0, 0, 0), l, ZoneAction::Of(k)).error, E::kInvalidField)
                << ZoneActionName(k);
        }
        EXPECT_EQ(DecideZoneAction(w, g, Res(0, 0, 0), l, ZoneAction::Append(1)).error,
                  p == ZonedProfile::kZbc ? E::kInvalidOpcode : E::kInvalidField);
        EXPECT_FALSE(DecideZoneAction(w, g, Res(0, 0, 0), l, ZoneAction::Recover()).plan.changed);
    }
    ZoneDecision ro = Do(w, g, ZoneAction::MakeReadOnly());
    ASSERT_TRUE(ro.ok());
    EXPECT_EQ(ro.plan.word.state(), S::kReadOnly);
    EXPECT_EQ(ro.plan.word.type(), ZoneType::kConventional);
    EXPECT_TRUE(ValidateZoneWord(ro.plan.word, g).ok());
    EXPECT_EQ(Do(ro.plan.word, g, ZoneAction::Write(g.zslba, 1)).error, E::kZoneIsReadOnly);
    ZoneDecision off = Do(ro.plan.word, g, ZoneAction::MakeOffline());
    ASSERT_TRUE(off.ok());
    EXPECT_TRUE(off.plan.discards());
    EXPECT_EQ(Do(off.plan.word, g, ZoneAction::Write(g.zslba, 1)).error, E::kZoneIsOffline);
    EXPECT_EQ(Do(off.plan.word, g, ZoneAction::MakeReadOnly()).error, E::kInvalidZoneStateTransition);
}

TEST(ZoneStateMachineTest, ZoneCrossingRules) {
    const auto conv = ZoneType::kConventional, seq = ZoneType::kSeqWriteRequired;
    EXPECT_EQ(CheckZoneCrossing(conv, conv, true, false), E::kNone);
    EXPECT_EQ(CheckZoneCrossing(conv, seq, true, true), E::kZoneBoundaryError);
    EXPECT_EQ(CheckZoneCrossing(seq, seq, true, true), E::kZoneBoundaryError);
    EXPECT_EQ(CheckZoneCrossing(conv, seq, false, false), E::kZoneBoundaryError);
    EXPECT_EQ(CheckZoneCrossing(conv, seq, false, true), E::kNone);
    EXPECT_EQ(CheckZoneCrossing(seq, seq, false, true), E::kNone);
}

// ---------------------------------------------------------------------------------------------
// Reads and range checks.

TEST(ZoneStateMachineTest, ReadChecks) {
    ZoneGeometry g = Geo();
    ZoneWord w = ZoneWord::Make(S::kClosed, g.type, 0, g.zslba + 100);
    ReadDecision r = DecideZoneRead(w, g, g.zslba + 90, 20, false);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r.in_zone_nlb, 20u);
    EXPECT_EQ(r.readable_nlb, 10u);
    r = DecideZoneRead(w, g, g.zslba + 200, 8, false);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r.readable_nlb, 0u);
    // Reading between capacity and zone size is allowed (zeros).
    r = DecideZoneRead(WordIn(S::kFull, g), g, g.cap_end() - 4, 8, false);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r.readable_nlb, 4u);
    EXPECT_EQ(DecideZoneRead(WordIn(S::kEmpty, g), g, g.zslba, 8, false).readable_nlb, 0u);
    EXPECT_EQ(DecideZoneRead(WordIn(S::kReadOnly, g), g, g.zslba, 20, false).readable_nlb, 8u);
    EXPECT_EQ(DecideZoneRead(WordIn(S::kOffline, g), g, g.zslba, 1, false).error, E::kZoneIsOffline);
    // Crossing the zone end.
    EXPECT_EQ(DecideZoneRead(w, g, g.end() - 1, 2, false).error, E::kZoneBoundaryError);
    r = DecideZoneRead(w, g, g.end() - 1, 2, true);
    ASSERT_TRUE(r.ok());
    EXPECT_TRUE(r.spills_into_next_zone);
    EXPECT_EQ(r.in_zone_nlb, 1u);
    EXPECT_EQ(DecideZoneRead(w, g, g.end(), 1, false).error, E::kInvalidField);
    // Conventional: everything readable, may spill.
    ZoneGeometry cg = Geo(kZsze, ZoneType::kConventional);
    r = DecideZoneRead(InitialZoneWord(cg), cg, cg.end() - 4, 8, false);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r.readable_nlb, 4u);
    EXPECT_TRUE(r.spills_into_next_zone);
}

TEST(ZoneStateMachineTest, LbaRangeAndZoneStart) {
    EXPECT_EQ(CheckLbaRange(1000, 0, 1000), E::kNone);
    EXPECT_EQ(CheckLbaRange(1000, 999, 1), E::kNone);
    EXPECT_EQ(CheckLbaRange(1000, 999, 2), E::kLbaOutOfRange);
    EXPECT_EQ(CheckLbaRange(1000, 1000, 1), E::kLbaOutOfRange);
    EXPECT_EQ(CheckLbaRange(1000, 1, ~0ull), E::kLbaOutOfRange);
    EXPECT_EQ(CheckLbaRange(1000, 0, 0), E::kInvalidField);
    ZoneGeometry g = Geo();
    EXPECT_EQ(CheckZoneStartLba(g, g.zslba), E::kNone);
    EXPECT_EQ(CheckZoneStartLba(g, g.zslba + 1), E::kInvalidField);
}

// ---------------------------------------------------------------------------------------------
// Persisted word validation.

TEST(ZoneStateMachineTest, ValidateZoneWordAcceptsEveryReachableWord) {
    ZoneGeometry g = Geo();
    EXPECT_TRUE(ValidateZoneWord(InitialZoneWord(g), g).ok());
    for (S s : kStates) EXPECT_TRUE(ValidateZoneWord(WordIn(s, g), g).ok()) << ZoneStateName(s);
    EXPECT_TRUE(ValidateZoneWord(ZoneWord::Make(S::kClosed, g.type, kZoneAttrZdev, g.zslba), g).ok());
    EXPECT_TRUE(ValidateZoneWord(ZoneWord::Make(S::kExplicitOpen, g.type, 0, g.zslba), g).ok());
    EXPECT_TRUE(ValidateZoneWord(ZoneWord::Make(S::kFull, g.type, kZoneAttrZfc, g.cap_end()), g).ok());
    EXPECT_TRUE(ValidateZoneWord(ZoneWord::Make(S::kReadOnly, g.type, 0, g.cap_end()), g).ok());
}

TEST(ZoneStateMachineTest, ValidateZoneWordRejects) {
    ZoneGeometry g = Geo();
    ZoneGeometry cg = Geo(kZsze, ZoneType::kConventional);
    struct Case {
        const char* name;
        ZoneWord w;
        ZoneGeometry g;
        const char* needle;
    } cases[] = {
        {"bad state", ZoneWord{(uint64_t{0x5} << 60) | g.zslba}, g, "not a zone state"},
        {"type mismatch", ZoneWord::Make(S::kEmpty, ZoneType::kConventional, 0, g.zslba), g, "type bit"},
        {"reserved attr", ZoneWord::Make(S::kClosed, g.type, 0x10, g.zslba + 1), g, "reserved"},
        {"zrwav", ZoneWord::Make(S::kClosed, g.type, kZoneAttrZrwav, g.zslba + 1), g, "ZRWAV"},
        {"empty wp", ZoneWord::Make(S::kEmpty, g.type, 0, g.zslba + 1), g, "!= zslba"},
        {"empty zdev", ZoneWord::Make(S::kEmpty, g.type, kZoneAttrZdev, g.zslba), g, "attributes"},
        {"wp below", ZoneWord::Make(S::kClosed, g.type, 0, g.zslba - 1), g, "outside"},
        {"wp above cap", ZoneWord::Make(S::kReadOnly, g.type, 0, g.cap_end() + 1), g, "outside"},
        {"full wp", ZoneWord::Make(S::kFull, g.type, 0, g.cap_end() - 1), g, "full zone"},
        {"io at start", ZoneWord::Make(S::kImplicitOpen, g.type, 0, g.zslba), g, "nothing written"},
        {"closed at cap", ZoneWord::Make(S::kClosed, g.type, 0, g.cap_end()), g, "should be full"},
        {"eo at cap", ZoneWord::Make(S::kExplicitOpen, g.type, 0, g.cap_end()), g, "should be full"},
        {"offline wp", ZoneWord::Make(S::kOffline, g.type, 0, g.zslba + 3), g, "!= zslba"},
        {"zfc on closed", ZoneWord::Make(S::kClosed, g.type, kZoneAttrZfc, g.zslba + 3), g, "ZFC"},
        {"seq not-wp", ZoneWord::Make(S::kNotWritePointer, g.type, 0, g.zslba), g, "not-write-pointer"},
        {"conv empty", ZoneWord::Make(S::kEmpty, cg.type, 0, cg.zslba), cg, "conventional zone in state"},
        {"conv wp", ZoneWord::Make(S::kNotWritePointer, cg.type, 0, cg.zslba + 1), cg, "wp"},
        {"conv attrs", ZoneWord::Make(S::kNotWritePointer, cg.type, kZoneAttrZdev, cg.zslba), cg, "attributes"},
    };
    for (const Case& c : cases) {
        Status st = ValidateZoneWord(c.w, c.g);
        ASSERT_FALSE(st.ok()) << c.name;
        EXPECT_NE(st.message().find(c.needle), std::string::npos) << c.name << ": " << st.message();
        EXPECT_NE(st.message().find("zone at sector"), std::string::npos) << c.name;
    }
}

TEST(ZoneStateMachineTest, ValidateZoneGeometry) {
    EXPECT_TRUE(ValidateZoneGeometry(Geo(), ZonedProfile::kZns).ok());
    EXPECT_FALSE(ValidateZoneGeometry(Geo(), ZonedProfile::kZbc).ok());  // ZBC: capacity == size
    EXPECT_TRUE(ValidateZoneGeometry(Geo(kZsze), ZonedProfile::kZbc).ok());
    EXPECT_FALSE(ValidateZoneGeometry(Geo(768, ZoneType::kConventional), ZonedProfile::kZns).ok());
    EXPECT_FALSE(ValidateZoneGeometry(Geo(0), ZonedProfile::kZns).ok());
    EXPECT_FALSE(ValidateZoneGeometry(Geo(kZsze + 1), ZonedProfile::kZns).ok());
    ZoneGeometry g = Geo();
    g.zslba += 1;
    EXPECT_FALSE(ValidateZoneGeometry(g, ZonedProfile::kZns).ok());
    g = Geo();
    g.zsze = 0;
    EXPECT_FALSE(ValidateZoneGeometry(g, ZonedProfile::kZns).ok());
    g.zsze = uint64_t{1} << 50;
    g.zcap = g.zsze;
    g.zslba = g.zsze * 2;  // ends at 3 << 50, beyond the 51-bit wp
    EXPECT_FALSE(ValidateZoneGeometry(g, ZonedProfile::kZns).ok());
    g.zslba = g.zsze;  // ends at 1 << 51: the Full wp would not fit either
    EXPECT_FALSE(ValidateZoneGeometry(g, ZonedProfile::kZns).ok());
    g.zslba = 0;
    EXPECT_TRUE(ValidateZoneGeometry(g, ZonedProfile::kZns).ok()) << ValidateZoneGeometry(g, ZonedProfile::kZns).message();
}

}  // namespace
}  // namespace qzns
