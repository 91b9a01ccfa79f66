/// @file
/// @brief The process lifecycle: `starting → ready → draining → closing → stopped`.
///
/// One object owns the state. It is a pure state machine: it never starts timers or touches
/// sockets. Whoever drives it (the HTTP server) feeds it events — signals, the preStop call,
/// the end of the drain delay, the shutdown deadline — and carries out the Action it returns.
/// Readers (sessions, probes) see it through the read-only DrainDecision.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <mutex>
#include <string_view>
#include <vector>

#include "rollsafe/util/clock.hpp"

namespace rollsafe::lifecycle {

enum class State { kStarting = 0, kReady = 1, kDraining = 2, kClosing = 3, kStopped = 4 };

/// Lower-case name of a state, as logged and exported ("draining").
std::string_view ToString(State s);

/// What the driver must do after an event.
enum class Action {
    kNone,             ///< nothing changes
    kStartDrainTimer,  ///< entered draining: call OnDrainElapsed() after drain_delay
    kStartClosing,     ///< entered closing: close listeners and idle connections, arm the deadline
    kDeadlineNow,      ///< cancel everything still in flight at once
};

/// Read-only view for sessions and probes.
class DrainDecision {
  public:
    virtual ~DrainDecision() = default;
    /// True once termination has begun: every response must carry `Connection: close`.
    virtual bool ShouldClose() const = 0;
    /// True while the process should receive new traffic (state is ready).
    virtual bool IsReady() const = 0;
};

struct Options {
    std::chrono::milliseconds drain_delay{5000};
    std::chrono::milliseconds shutdown_timeout{25000};
};

/// The lifecycle state machine. Thread-safe: events may come from any thread; state reads are
/// lock-free.
class Lifecycle final : public DrainDecision {
  public:
    /// Called after each transition, with the lock released, on the thread that caused it.
    using Listener = std::function<void(State from, State to)>;

    Lifecycle(const util::Clock& clock, Options options);

    // Sequentially consistent on purpose: the server decrements its in-flight count and then
    // reads the state, while the closing transition stores the state and then reads the count;
    // with weaker orders both could miss each other and nobody would finish.
    State GetState() const { return state_.load(); }
    const Options& GetOptions() const { return options_; }

    bool ShouldClose() const override { return GetState() >= State::kDraining; }
    bool IsReady() const override { return GetState() == State::kReady; }

    /// starting → ready. No-op in any other state.
    void MarkReady();

    /// SIGTERM or SIGINT. The first one starts draining (or, after a completed preStop, goes
    /// straight to closing); a later one asks for the deadline at once.
    Action OnSignal();

    /// `GET /lifecycle/prestop`: starts draining (kStartDrainTimer) if not yet terminating.
    /// A preStop arriving while already terminating changes nothing (kNone).
    Action OnPreStop();

    /// The drain delay has passed. When draining was started by a signal: → closing
    /// (kStartClosing). When started by preStop: stays draining, remembering that the drain is
    /// done, so the SIGTERM that follows goes straight to closing.
    Action OnDrainElapsed();

    /// shutdown_timeout after closing began (or a second signal): no state change; tells the
    /// driver to cancel what is in flight. Returns kDeadlineNow once, then kNone.
    Action OnDeadline();

    /// closing → stopped, once nothing is in flight. Idempotent.
    void MarkStopped();

    /// When termination began (signal or preStop); epoch if it has not.
    util::Clock::Steady TerminationStartedAt() const;
    /// True when OnDeadline has fired (by timer or second signal).
    bool DeadlinePassed() const { return deadline_passed_.load(std::memory_order_acquire); }

    /// Registers a transition listener. Call before events start arriving.
    void Subscribe(Listener listener);

  private:
    void TransitionLocked(State to, std::vector<std::pair<State, State>>& fired);
    void Notify(const std::vector<std::pair<State, State>>& fired);

    const util::Clock& clock_;
    const Options options_;
    std::atomic<State> state_{State::kStarting};
    std::atomic<bool> deadline_passed_{false};
    mutable std::mutex mu_;
    bool started_by_prestop_ = false;
    bool drain_done_ = false;
    int signals_ = 0;
    util::Clock::Steady termination_started_{};
    std::vector<Listener> listeners_;
};

}  // namespace rollsafe::lifecycle
