#include "rollsafe/lifecycle/lifecycle.hpp"

namespace rollsafe::lifecycle {

std::string_view ToString(State s) {
    switch (s) {
        case State::kStarting:
            return "starting";
        case State::kReady:
            return "ready";
        case State::kDraining:
            return "draining";
        case State::kClosing:
            return "closing";
        case State::kStopped:
            return "stopped";
    }
    return "unknown";
}

Lifecycle::Lifecycle(const util::Clock& clock, Options options)
    : clock_(clock), options_(options) {}

void Lifecycle::Subscribe(Listener listener) {
    std::lock_guard lock(mu_);
    listeners_.push_back(std::move(listener));
}

void Lifecycle::TransitionLocked(State to, std::vector<std::pair<State, State>>& fired) {
    const State from = state_.load(std::memory_order_relaxed);
    if (from == to) return;
    if (to == State::kDraining) termination_started_ = clock_.SteadyNow();
    if (to == State::kClosing && from < State::kDraining) termination_started_ = clock_.SteadyNow();
    state_.store(to);
    fired.emplace_back(from, to);
}

void Lifecycle::Notify(const std::vector<std::pair<State, State>>& fired) {
    // Listeners run without the lock so that they may read the state or post work freely;
    // they were all registered before events started, so copying is not needed.
    for (const auto& [from, to] : fired)
        for (const auto& l : listeners_) l(from, to);
}

void Lifecycle::MarkReady() {
    std::vector<std::pair<State, State>> fired;
    {
        std::lock_guard lock(mu_);
        if (state_.load(std::memory_order_relaxed) == State::kStarting)
            TransitionLocked(State::kReady, fired);
    }
    Notify(fired);
}

Action Lifecycle::OnSignal() {
    std::vector<std::pair<State, State>> fired;
    Action action = Action::kNone;
    {
        std::lock_guard lock(mu_);
        const State s = state_.load(std::memory_order_relaxed);
        ++signals_;
        if (s == State::kStopped) {
            action = Action::kNone;
        } else if (s < State::kDraining) {
            TransitionLocked(State::kDraining, fired);
            action = Action::kStartDrainTimer;
        } else if (s == State::kDraining && started_by_prestop_ && signals_ == 1) {
            // The preStop hook waited (or is waiting) for the drain; its SIGTERM means "close".
            if (drain_done_) {
                TransitionLocked(State::kClosing, fired);
                action = Action::kStartClosing;
            }
        } else if (!deadline_passed_.load(std::memory_order_relaxed)) {
            // A repeated signal: the operator wants out now.
            TransitionLocked(State::kClosing, fired);
            deadline_passed_.store(true, std::memory_order_release);
            action = Action::kDeadlineNow;
        }
    }
    Notify(fired);
    return action;
}

Action Lifecycle::OnPreStop() {
    std::vector<std::pair<State, State>> fired;
    Action action = Action::kNone;
    {
        std::lock_guard lock(mu_);
        if (state_.load(std::memory_order_relaxed) < State::kDraining) {
            started_by_prestop_ = true;
            TransitionLocked(State::kDraining, fired);
            action = Action::kStartDrainTimer;
        }
    }
    Notify(fired);
    return action;
}

Action Lifecycle::OnDrainElapsed() {
    std::vector<std::pair<State, State>> fired;
    Action action = Action::kNone;
    {
        std::lock_guard lock(mu_);
        if (state_.load(std::memory_order_relaxed) == State::kDraining) {
            drain_done_ = true;
            if (!started_by_prestop_ || signals_ > 0) {
                TransitionLocked(State::kClosing, fired);
                action = Action::kStartClosing;
            }
        }
    }
    Notify(fired);
    return action;
}

Action Lifecycle::OnDeadline() {
    std::lock_guard lock(mu_);
    if (deadline_passed_.load(std::memory_order_relaxed)) return Action::kNone;
    if (state_.load(std::memory_order_relaxed) != State::kClosing) return Action::kNone;
    deadline_passed_.store(true, std::memory_order_release);
    return Action::kDeadlineNow;
}

void Lifecycle::MarkStopped() {
    std::vector<std::pair<State, State>> fired;
    {
        std::lock_guard lock(mu_);
        if (state_.load(std::memory_order_relaxed) != State::kStopped)
            TransitionLocked(State::kStopped, fired);
    }
    Notify(fired);
}

util::Clock::Steady Lifecycle::TerminationStartedAt() const {
    std::lock_guard lock(mu_);
    return termination_started_;
}

}  // namespace rollsafe::lifecycle
