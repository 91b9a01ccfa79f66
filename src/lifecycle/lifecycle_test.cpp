#include "rollsafe/lifecycle/lifecycle.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <latch>
#include <memory>
#include <mutex>
#include <ostream>
#include <thread>
#include <utility>
#include <vector>

#include "testing/fake_clock.hpp"

namespace rollsafe::lifecycle {

// Readable failure messages (found by argument-dependent lookup, so not in the anonymous
// namespace).
void PrintTo(State s, std::ostream* os) { *os << ToString(s); }
void PrintTo(Action a, std::ostream* os) {
    switch (a) {
        case Action::kNone:
            *os << "kNone";
            return;
        case Action::kStartDrainTimer:
            *os << "kStartDrainTimer";
            return;
        case Action::kStartClosing:
            *os << "kStartClosing";
            return;
        case Action::kDeadlineNow:
            *os << "kDeadlineNow";
            return;
    }
    *os << "Action(" << static_cast<int>(a) << ")";
}

namespace {

using namespace std::chrono_literals;
using rollsafe::testing::FakeClock;

constexpr auto kMaxTestWait = 20s;

/// Records every (from, to) transition a Lifecycle reports.
struct Recorder {
    std::mutex mu;
    std::vector<std::pair<State, State>> seen;

    Lifecycle::Listener Listener() {
        return [this](State from, State to) {
            std::lock_guard lock(mu);
            seen.emplace_back(from, to);
        };
    }
    std::vector<std::pair<State, State>> Seen() {
        std::lock_guard lock(mu);
        return seen;
    }
};

using Transitions = std::vector<std::pair<State, State>>;

class LifecycleTest : public ::testing::Test {
  protected:
    LifecycleTest() : lc_(clock_, Options{5000ms, 25000ms}) { lc_.Subscribe(rec_.Listener()); }

    /// Brings the lifecycle to ready and forgets that transition.
    void Ready() {
        lc_.MarkReady();
        ASSERT_EQ(lc_.GetState(), State::kReady);
        rec_.seen.clear();
    }

    FakeClock clock_;
    Recorder rec_;
    Lifecycle lc_;
};

// ---- names and initial state ----

TEST(LifecycleState, ToStringGivesLowerCaseNames) {
    EXPECT_EQ(ToString(State::kStarting), "starting");
    EXPECT_EQ(ToString(State::kReady), "ready");
    EXPECT_EQ(ToString(State::kDraining), "draining");
    EXPECT_EQ(ToString(State::kClosing), "closing");
    EXPECT_EQ(ToString(State::kStopped), "stopped");
}

TEST_F(LifecycleTest, StartsInStartingNeitherReadyNorClosing) {
    EXPECT_EQ(lc_.GetState(), State::kStarting);
    EXPECT_FALSE(lc_.IsReady());
    EXPECT_FALSE(lc_.ShouldClose());
    EXPECT_FALSE(lc_.DeadlinePassed());
    EXPECT_TRUE(rec_.Seen().empty());
}

TEST_F(LifecycleTest, KeepsTheOptionsItWasGiven) {
    EXPECT_EQ(lc_.GetOptions().drain_delay, 5000ms);
    EXPECT_EQ(lc_.GetOptions().shutdown_timeout, 25000ms);
}

TEST_F(LifecycleTest, TerminationStartedAtIsTheEpochBeforeTermination) {
    lc_.MarkReady();
    EXPECT_EQ(lc_.TerminationStartedAt(), util::Clock::Steady{});
}

// ---- ready ----

TEST_F(LifecycleTest, MarkReadyMovesStartingToReady) {
    lc_.MarkReady();
    EXPECT_EQ(lc_.GetState(), State::kReady);
    EXPECT_TRUE(lc_.IsReady());
    EXPECT_FALSE(lc_.ShouldClose());
    EXPECT_EQ(rec_.Seen(), (Transitions{{State::kStarting, State::kReady}}));
}

TEST_F(LifecycleTest, MarkReadyTwiceReportsOneTransition) {
    lc_.MarkReady();
    lc_.MarkReady();
    EXPECT_EQ(rec_.Seen(), (Transitions{{State::kStarting, State::kReady}}));
}

TEST_F(LifecycleTest, MarkReadyDuringDrainingChangesNothing) {
    Ready();
    ASSERT_EQ(lc_.OnSignal(), Action::kStartDrainTimer);
    rec_.seen.clear();
    lc_.MarkReady();
    EXPECT_EQ(lc_.GetState(), State::kDraining);
    EXPECT_FALSE(lc_.IsReady());
    EXPECT_TRUE(rec_.Seen().empty());
}

// ---- signal-driven termination ----

TEST_F(LifecycleTest, FirstSignalStartsDrainingAndAsksForTheDrainTimer) {
    Ready();
    EXPECT_EQ(lc_.OnSignal(), Action::kStartDrainTimer);
    EXPECT_EQ(lc_.GetState(), State::kDraining);
    EXPECT_TRUE(lc_.ShouldClose());
    EXPECT_FALSE(lc_.IsReady());
    EXPECT_FALSE(lc_.DeadlinePassed());
    EXPECT_EQ(rec_.Seen(), (Transitions{{State::kReady, State::kDraining}}));
}

TEST_F(LifecycleTest, SignalWhileStartingAlsoStartsDraining) {
    EXPECT_EQ(lc_.OnSignal(), Action::kStartDrainTimer);
    EXPECT_EQ(lc_.GetState(), State::kDraining);
    EXPECT_EQ(rec_.Seen(), (Transitions{{State::kStarting, State::kDraining}}));
}

TEST_F(LifecycleTest, DrainElapsedAfterSignalStartsClosing) {
    Ready();
    ASSERT_EQ(lc_.OnSignal(), Action::kStartDrainTimer);
    clock_.Advance(5000ms);
    EXPECT_EQ(lc_.OnDrainElapsed(), Action::kStartClosing);
    EXPECT_EQ(lc_.GetState(), State::kClosing);
    EXPECT_TRUE(lc_.ShouldClose());
    EXPECT_FALSE(lc_.DeadlinePassed());
    EXPECT_EQ(rec_.Seen(), (Transitions{{State::kReady, State::kDraining},
                                        {State::kDraining, State::kClosing}}));
}

TEST_F(LifecycleTest, DrainElapsedOutsideDrainingDoesNothing) {
    EXPECT_EQ(lc_.OnDrainElapsed(), Action::kNone);  // starting
    EXPECT_EQ(lc_.GetState(), State::kStarting);
    Ready();
    EXPECT_EQ(lc_.OnDrainElapsed(), Action::kNone);  // ready
    EXPECT_EQ(lc_.GetState(), State::kReady);
    ASSERT_EQ(lc_.OnSignal(), Action::kStartDrainTimer);
    ASSERT_EQ(lc_.OnDrainElapsed(), Action::kStartClosing);
    EXPECT_EQ(lc_.OnDrainElapsed(), Action::kNone);  // closing: a stale timer
    EXPECT_EQ(lc_.GetState(), State::kClosing);
}

TEST_F(LifecycleTest, SecondSignalSkipsToDeadlineOnce) {
    Ready();
    ASSERT_EQ(lc_.OnSignal(), Action::kStartDrainTimer);
    EXPECT_EQ(lc_.OnSignal(), Action::kDeadlineNow);
    EXPECT_TRUE(lc_.DeadlinePassed());
    EXPECT_TRUE(lc_.ShouldClose());
    EXPECT_EQ(lc_.OnSignal(), Action::kNone);
    EXPECT_EQ(lc_.OnSignal(), Action::kNone);
    // The deadline has been used up: the timer firing later does not repeat it.
    EXPECT_EQ(lc_.OnDeadline(), Action::kNone);
}

TEST_F(LifecycleTest, SecondSignalDuringDrainingMovesToClosing) {
    Ready();
    ASSERT_EQ(lc_.OnSignal(), Action::kStartDrainTimer);
    ASSERT_EQ(lc_.OnSignal(), Action::kDeadlineNow);
    EXPECT_EQ(lc_.GetState(), State::kClosing);
    EXPECT_EQ(rec_.Seen(), (Transitions{{State::kReady, State::kDraining},
                                        {State::kDraining, State::kClosing}}));
    // The drain timer that was already armed fires later and must not close again.
    EXPECT_EQ(lc_.OnDrainElapsed(), Action::kNone);
}

TEST_F(LifecycleTest, SecondSignalWhileClosingAsksForDeadlineOnce) {
    Ready();
    ASSERT_EQ(lc_.OnSignal(), Action::kStartDrainTimer);
    ASSERT_EQ(lc_.OnDrainElapsed(), Action::kStartClosing);
    rec_.seen.clear();
    EXPECT_EQ(lc_.OnSignal(), Action::kDeadlineNow);
    EXPECT_TRUE(lc_.DeadlinePassed());
    EXPECT_EQ(lc_.GetState(), State::kClosing);
    EXPECT_TRUE(rec_.Seen().empty());
    EXPECT_EQ(lc_.OnSignal(), Action::kNone);
    EXPECT_EQ(lc_.OnDeadline(), Action::kNone);
}

// ---- preStop-driven termination ----

TEST_F(LifecycleTest, PreStopStartsDrainingAndAsksForTheDrainTimer) {
    Ready();
    EXPECT_EQ(lc_.OnPreStop(), Action::kStartDrainTimer);
    EXPECT_EQ(lc_.GetState(), State::kDraining);
    EXPECT_TRUE(lc_.ShouldClose());
    EXPECT_FALSE(lc_.IsReady());
    EXPECT_EQ(rec_.Seen(), (Transitions{{State::kReady, State::kDraining}}));
}

TEST_F(LifecycleTest, PreStopThenDrainElapsedStaysDrainingUntilTheSignal) {
    Ready();
    ASSERT_EQ(lc_.OnPreStop(), Action::kStartDrainTimer);
    clock_.Advance(5000ms);
    EXPECT_EQ(lc_.OnDrainElapsed(), Action::kNone);
    EXPECT_EQ(lc_.GetState(), State::kDraining);
    EXPECT_TRUE(lc_.ShouldClose());

    clock_.Advance(100ms);
    EXPECT_EQ(lc_.OnSignal(), Action::kStartClosing);
    EXPECT_EQ(lc_.GetState(), State::kClosing);
    EXPECT_FALSE(lc_.DeadlinePassed());
    EXPECT_EQ(rec_.Seen(), (Transitions{{State::kReady, State::kDraining},
                                        {State::kDraining, State::kClosing}}));
}

TEST_F(LifecycleTest, SignalDuringPreStopDrainClosesWhenTheDrainEnds) {
    Ready();
    ASSERT_EQ(lc_.OnPreStop(), Action::kStartDrainTimer);
    clock_.Advance(1000ms);
    EXPECT_EQ(lc_.OnSignal(), Action::kNone);
    EXPECT_EQ(lc_.GetState(), State::kDraining);
    EXPECT_FALSE(lc_.DeadlinePassed());

    clock_.Advance(4000ms);
    EXPECT_EQ(lc_.OnDrainElapsed(), Action::kStartClosing);
    EXPECT_EQ(lc_.GetState(), State::kClosing);
    EXPECT_EQ(rec_.Seen(), (Transitions{{State::kReady, State::kDraining},
                                        {State::kDraining, State::kClosing}}));
}

TEST_F(LifecycleTest, SecondSignalDuringPreStopDrainAsksForDeadline) {
    Ready();
    ASSERT_EQ(lc_.OnPreStop(), Action::kStartDrainTimer);
    ASSERT_EQ(lc_.OnSignal(), Action::kNone);
    EXPECT_EQ(lc_.OnSignal(), Action::kDeadlineNow);
    EXPECT_TRUE(lc_.DeadlinePassed());
    EXPECT_TRUE(lc_.ShouldClose());
    EXPECT_EQ(lc_.OnSignal(), Action::kNone);
}

TEST_F(LifecycleTest, SecondSignalAfterPreStopClosingAsksForDeadline) {
    Ready();
    ASSERT_EQ(lc_.OnPreStop(), Action::kStartDrainTimer);
    ASSERT_EQ(lc_.OnDrainElapsed(), Action::kNone);
    ASSERT_EQ(lc_.OnSignal(), Action::kStartClosing);
    EXPECT_EQ(lc_.OnSignal(), Action::kDeadlineNow);
    EXPECT_EQ(lc_.OnSignal(), Action::kNone);
}

TEST_F(LifecycleTest, PreStopWhileTerminatingChangesNothing) {
    Ready();
    ASSERT_EQ(lc_.OnSignal(), Action::kStartDrainTimer);
    rec_.seen.clear();
    EXPECT_EQ(lc_.OnPreStop(), Action::kNone);
    EXPECT_EQ(lc_.GetState(), State::kDraining);
    EXPECT_TRUE(rec_.Seen().empty());
    // Still a signal-started drain: its end goes to closing without waiting for a signal.
    EXPECT_EQ(lc_.OnDrainElapsed(), Action::kStartClosing);
    EXPECT_EQ(lc_.OnPreStop(), Action::kNone);
    EXPECT_EQ(lc_.GetState(), State::kClosing);
}

TEST_F(LifecycleTest, SecondPreStopChangesNothing) {
    Ready();
    ASSERT_EQ(lc_.OnPreStop(), Action::kStartDrainTimer);
    EXPECT_EQ(lc_.OnPreStop(), Action::kNone);
    EXPECT_EQ(lc_.GetState(), State::kDraining);
    EXPECT_EQ(rec_.Seen().size(), 1u);
}

// ---- deadline ----

TEST_F(LifecycleTest, DeadlineBeforeClosingDoesNothing) {
    EXPECT_EQ(lc_.OnDeadline(), Action::kNone);  // starting
    Ready();
    EXPECT_EQ(lc_.OnDeadline(), Action::kNone);  // ready
    ASSERT_EQ(lc_.OnSignal(), Action::kStartDrainTimer);
    EXPECT_EQ(lc_.OnDeadline(), Action::kNone);  // draining
    EXPECT_FALSE(lc_.DeadlinePassed());
    EXPECT_EQ(lc_.GetState(), State::kDraining);
}

TEST_F(LifecycleTest, DeadlineInClosingFiresOnceWithoutChangingState) {
    Ready();
    ASSERT_EQ(lc_.OnSignal(), Action::kStartDrainTimer);
    ASSERT_EQ(lc_.OnDeadline(), Action::kNone);  // too early: must not use the deadline up
    ASSERT_EQ(lc_.OnDrainElapsed(), Action::kStartClosing);
    rec_.seen.clear();
    clock_.Advance(25000ms);
    EXPECT_EQ(lc_.OnDeadline(), Action::kDeadlineNow);
    EXPECT_TRUE(lc_.DeadlinePassed());
    EXPECT_EQ(lc_.GetState(), State::kClosing);
    EXPECT_TRUE(rec_.Seen().empty());
    EXPECT_EQ(lc_.OnDeadline(), Action::kNone);
    // A signal after the deadline has nothing left to hurry.
    EXPECT_EQ(lc_.OnSignal(), Action::kNone);
}

TEST_F(LifecycleTest, DeadlineAfterStoppedDoesNothing) {
    Ready();
    ASSERT_EQ(lc_.OnSignal(), Action::kStartDrainTimer);
    ASSERT_EQ(lc_.OnDrainElapsed(), Action::kStartClosing);
    lc_.MarkStopped();
    EXPECT_EQ(lc_.OnDeadline(), Action::kNone);
    EXPECT_FALSE(lc_.DeadlinePassed());
}

// ---- stopped ----

TEST_F(LifecycleTest, MarkStoppedFromClosingStopsAndIsIdempotent) {
    Ready();
    ASSERT_EQ(lc_.OnSignal(), Action::kStartDrainTimer);
    ASSERT_EQ(lc_.OnDrainElapsed(), Action::kStartClosing);
    rec_.seen.clear();
    lc_.MarkStopped();
    EXPECT_EQ(lc_.GetState(), State::kStopped);
    EXPECT_TRUE(lc_.ShouldClose());
    EXPECT_FALSE(lc_.IsReady());
    lc_.MarkStopped();
    EXPECT_EQ(lc_.GetState(), State::kStopped);
    EXPECT_EQ(rec_.Seen(), (Transitions{{State::kClosing, State::kStopped}}));
}

TEST_F(LifecycleTest, EventsAfterStoppedChangeNothing) {
    Ready();
    ASSERT_EQ(lc_.OnSignal(), Action::kStartDrainTimer);
    ASSERT_EQ(lc_.OnDrainElapsed(), Action::kStartClosing);
    lc_.MarkStopped();
    rec_.seen.clear();
    EXPECT_EQ(lc_.OnSignal(), Action::kNone);
    EXPECT_EQ(lc_.OnPreStop(), Action::kNone);
    EXPECT_EQ(lc_.OnDrainElapsed(), Action::kNone);
    lc_.MarkReady();
    EXPECT_EQ(lc_.GetState(), State::kStopped);
    EXPECT_TRUE(rec_.Seen().empty());
}

// ---- listeners ----

TEST_F(LifecycleTest, ListenersSeeTheWholeSequenceInOrder) {
    lc_.MarkReady();
    ASSERT_EQ(lc_.OnSignal(), Action::kStartDrainTimer);
    ASSERT_EQ(lc_.OnDrainElapsed(), Action::kStartClosing);
    lc_.MarkStopped();
    EXPECT_EQ(rec_.Seen(), (Transitions{{State::kStarting, State::kReady},
                                        {State::kReady, State::kDraining},
                                        {State::kDraining, State::kClosing},
                                        {State::kClosing, State::kStopped}}));
}

TEST(Lifecycle, EveryListenerIsCalledOnTheThreadThatCausedTheTransition) {
    FakeClock clock;
    Lifecycle lc(clock, Options{});
    Recorder first, second;
    std::thread::id called_on;
    lc.Subscribe(first.Listener());
    lc.Subscribe(second.Listener());
    lc.Subscribe([&](State, State) { called_on = std::this_thread::get_id(); });

    std::thread t([&] { lc.MarkReady(); });
    const auto caller = t.get_id();
    t.join();

    const Transitions expected{{State::kStarting, State::kReady}};
    EXPECT_EQ(first.Seen(), expected);
    EXPECT_EQ(second.Seen(), expected);
    EXPECT_EQ(called_on, caller);
}

TEST(Lifecycle, ListenersRunWithTheLockReleased) {
    // A listener that calls back into the lifecycle (TerminationStartedAt takes its lock)
    // would deadlock if it ran under the lock. Run the event on another thread and bound the
    // wait; everything that thread touches is shared, so a timeout leaves nothing dangling.
    struct Shared {
        FakeClock clock;
        Lifecycle lc{clock, Options{}};
        util::Clock::Steady seen_in_listener{};
        std::promise<Action> done;
    };
    auto shared = std::make_shared<Shared>();
    Shared* raw = shared.get();
    shared->lc.Subscribe([raw](State, State to) {
        if (to == State::kDraining) raw->seen_in_listener = raw->lc.TerminationStartedAt();
    });
    shared->lc.MarkReady();
    shared->clock.Advance(7s);

    auto result = shared->done.get_future();
    std::thread t([shared] { shared->done.set_value(shared->lc.OnSignal()); });
    if (result.wait_for(kMaxTestWait) != std::future_status::ready) {
        t.detach();
        FAIL() << "OnSignal did not return: the listener was called with the lock held";
    }
    t.join();
    EXPECT_EQ(result.get(), Action::kStartDrainTimer);
    EXPECT_EQ(shared->seen_in_listener, shared->clock.SteadyNow());
}

// ---- the DrainDecision view ----

TEST_F(LifecycleTest, DrainDecisionViewFollowsTheState) {
    const DrainDecision& view = lc_;
    EXPECT_FALSE(view.IsReady());
    EXPECT_FALSE(view.ShouldClose());
    lc_.MarkReady();
    EXPECT_TRUE(view.IsReady());
    EXPECT_FALSE(view.ShouldClose());
    ASSERT_EQ(lc_.OnSignal(), Action::kStartDrainTimer);
    EXPECT_FALSE(view.IsReady());
    EXPECT_TRUE(view.ShouldClose());
    ASSERT_EQ(lc_.OnDrainElapsed(), Action::kStartClosing);
    EXPECT_FALSE(view.IsReady());
    EXPECT_TRUE(view.ShouldClose());
}

// ---- termination start time ----

TEST_F(LifecycleTest, TerminationStartedAtIsTheClockTimeOfTheFirstSignal) {
    Ready();
    clock_.Advance(3s);
    const auto at_signal = clock_.SteadyNow();
    ASSERT_EQ(lc_.OnSignal(), Action::kStartDrainTimer);
    EXPECT_EQ(lc_.TerminationStartedAt(), at_signal);

    clock_.Advance(5s);
    ASSERT_EQ(lc_.OnDrainElapsed(), Action::kStartClosing);
    clock_.Advance(1s);
    ASSERT_EQ(lc_.OnSignal(), Action::kDeadlineNow);
    lc_.MarkStopped();
    EXPECT_EQ(lc_.TerminationStartedAt(), at_signal);
}

TEST_F(LifecycleTest, TerminationStartedAtIsTheClockTimeOfPreStopNotTheLaterSignal) {
    Ready();
    clock_.Advance(2s);
    const auto at_prestop = clock_.SteadyNow();
    ASSERT_EQ(lc_.OnPreStop(), Action::kStartDrainTimer);
    clock_.Advance(5s);
    ASSERT_EQ(lc_.OnDrainElapsed(), Action::kNone);
    clock_.Advance(1s);
    ASSERT_EQ(lc_.OnSignal(), Action::kStartClosing);
    EXPECT_EQ(lc_.TerminationStartedAt(), at_prestop);
}

// ---- concurrency ----

TEST(Lifecycle, ConcurrentSignalsGiveExactlyOneDrainAndOneDeadline) {
    FakeClock clock;
    Lifecycle lc(clock, Options{});
    lc.MarkReady();
    constexpr int kThreads = 8;
    std::latch start(kThreads);
    std::vector<Action> actions(kThreads, Action::kNone);
    std::vector<std::thread> threads;
    for (int i = 0; i < kThreads; ++i)
        threads.emplace_back([&, i] {
            start.arrive_and_wait();
            actions[i] = lc.OnSignal();
        });
    for (auto& t : threads) t.join();
    int drains = 0, deadlines = 0, other = 0;
    for (const Action a : actions) {
        if (a == Action::kStartDrainTimer)
            ++drains;
        else if (a == Action::kDeadlineNow)
            ++deadlines;
        else if (a != Action::kNone)
            ++other;
    }
    EXPECT_EQ(drains, 1);
    EXPECT_EQ(deadlines, 1);
    EXPECT_EQ(other, 0);
    EXPECT_TRUE(lc.DeadlinePassed());
}

}  // namespace
}  // namespace rollsafe::lifecycle
