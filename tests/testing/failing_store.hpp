/// @file
/// @brief A countdown fault injector for store::Store (style rule 12, after Beast's
/// `test::fail_count`): the Nth Tx statement made through the store throws a transient
/// store::Error instead of running, so a test can walk N = 0, 1, 2, … over every failure point
/// of an operation until it completes without a fault.
///
/// Header-only. Thread-safe: the counters are atomics, so the store's writer and reader threads
/// and the test thread may use them at once.
#pragma once

#include <stdlib.h>
#include "testing/temp_dir.hpp"

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "rollsafe/store/store.hpp"

namespace rollsafe::testing {

/// The countdown shared by a FailingStore and the FailingTx objects it hands to jobs.
///
/// Disarmed, it only counts. Armed at N, calls 0 … N-1 (counted from the arming) run, call N
/// throws `store::Error(kind, "injected")` (kTransient unless told otherwise), and the
/// countdown disarms itself: one fault per arming, as after a single store blip.
class FailCount {
  public:
    /// Arms the countdown: the `n`-th Tx call from now (0-based) throws an error of `kind`.
    /// `n` must be >= 0.
    void Arm(std::int64_t n, store::ErrorKind kind = store::ErrorKind::kTransient) {
        std::lock_guard lock(mu_);
        fired_at_.clear();
        fired_.store(false);
        kind_.store(kind);
        remaining_.store(n);
    }

    /// No further call fails. Does not reset what has fired.
    void Disarm() { remaining_.store(kDisarmed); }

    /// True when the armed fault has been thrown since the last Arm().
    bool Fired() const { return fired_.load(); }

    /// The Tx method that received the fault ("" when none has).
    std::string FiredAt() const {
        std::lock_guard lock(mu_);
        return fired_at_;
    }

    /// Tx calls seen since construction (including the one that failed).
    std::int64_t Calls() const { return calls_.load(); }

    /// Called by FailingTx before every statement; throws the injected error on the Nth.
    void Step(const char* method) {
        calls_.fetch_add(1);
        std::int64_t cur = remaining_.load();
        while (cur >= 0) {
            if (!remaining_.compare_exchange_weak(cur, cur - 1)) continue;
            if (cur == 0) {
                {
                    std::lock_guard lock(mu_);
                    fired_at_ = method;
                }
                fired_.store(true);
                throw store::Error(kind_.load(), "injected");
            }
            return;
        }
    }

  private:
    static constexpr std::int64_t kDisarmed = -1;

    std::atomic<std::int64_t> remaining_{kDisarmed};
    std::atomic<std::int64_t> calls_{0};
    std::atomic<bool> fired_{false};
    std::atomic<store::ErrorKind> kind_{store::ErrorKind::kTransient};
    mutable std::mutex mu_;
    std::string fired_at_;
};

/// A store::Tx that counts every call on a FailCount (which may throw) and then forwards it to
/// the real Tx. Valid only as long as the Tx it wraps.
class FailingTx final : public store::Tx {
  public:
    FailingTx(store::Tx& real, FailCount& count) : real_(real), count_(count) {}

    std::optional<store::Operation> GetOperation(const std::string& principal,
                                                 const std::string& key) override {
        count_.Step("GetOperation");
        return real_.GetOperation(principal, key);
    }
    bool InsertOperation(const store::Operation& op) override {
        count_.Step("InsertOperation");
        return real_.InsertOperation(op);
    }
    bool TakeOver(const std::string& principal, const std::string& key,
                  const std::string& new_owner, std::int64_t lease_until_ms,
                  std::int64_t now_ms) override {
        count_.Step("TakeOver");
        return real_.TakeOver(principal, key, new_owner, lease_until_ms, now_ms);
    }
    bool SaveProgress(const std::string& principal, const std::string& key,
                      const std::string& owner, const std::string& recovery_point,
                      const std::string& recovery_state, std::int64_t lease_until_ms,
                      std::int64_t now_ms) override {
        count_.Step("SaveProgress");
        return real_.SaveProgress(principal, key, owner, recovery_point, recovery_state,
                                  lease_until_ms, now_ms);
    }
    bool Renew(const std::string& principal, const std::string& key, const std::string& owner,
               std::int64_t lease_until_ms) override {
        count_.Step("Renew");
        return real_.Renew(principal, key, owner, lease_until_ms);
    }
    bool Complete(const std::string& principal, const std::string& key, const std::string& owner,
                  int status, const std::string& headers_json, const std::string& body,
                  std::int64_t now_ms) override {
        count_.Step("Complete");
        return real_.Complete(principal, key, owner, status, headers_json, body, now_ms);
    }
    bool Release(const std::string& principal, const std::string& key, const std::string& owner,
                 std::int64_t now_ms) override {
        count_.Step("Release");
        return real_.Release(principal, key, owner, now_ms);
    }
    std::vector<store::Operation> ExpiredOperations(std::int64_t now_ms, int limit) override {
        count_.Step("ExpiredOperations");
        return real_.ExpiredOperations(now_ms, limit);
    }
    int DeleteCompletedBefore(std::int64_t before_ms, int limit) override {
        count_.Step("DeleteCompletedBefore");
        return real_.DeleteCompletedBefore(before_ms, limit);
    }
    std::vector<store::Operation> AllOperations() override {
        count_.Step("AllOperations");
        return real_.AllOperations();
    }
    void InsertResource(const store::Resource& r) override {
        count_.Step("InsertResource");
        real_.InsertResource(r);
    }
    std::optional<store::Resource> GetResource(const std::string& id) override {
        count_.Step("GetResource");
        return real_.GetResource(id);
    }
    std::vector<store::Resource> AllResources() override {
        count_.Step("AllResources");
        return real_.AllResources();
    }
    bool AppendEntry(store::LedgerEntry& entry, std::int64_t fence) override {
        count_.Step("AppendEntry");
        return real_.AppendEntry(entry, fence);
    }
    std::optional<std::pair<std::int64_t, std::vector<store::LedgerEntry>>> GetAccount(
        const std::string& account) override {
        count_.Step("GetAccount");
        return real_.GetAccount(account);
    }
    std::vector<std::pair<std::string, std::int64_t>> AllAccounts() override {
        count_.Step("AllAccounts");
        return real_.AllAccounts();
    }
    std::vector<store::LedgerEntry> AllEntries() override {
        count_.Step("AllEntries");
        return real_.AllEntries();
    }

  private:
    store::Tx& real_;
    FailCount& count_;
};

/// A store::Store that decorates a real one: every job runs against a FailingTx, so the armed
/// countdown can make any statement of any job fail. A job that lets the injected error escape
/// is rolled back by the real store like any other failing job, and its callback gets
/// kTransient. Write() and Read() calls are counted.
///
/// A second, independent countdown loses acknowledgements: armed at N, the Nth Write() from
/// then on runs and commits as usual, but its callback is told `kInDoubt` (the connection died
/// after COMMIT was sent), so a test can check that callers never assume a failed commit did
/// not happen.
///
/// Owns the real store; the destructor shuts it down (finishing queued jobs, which still count
/// on this object) before anything else is destroyed.
class FailingStore final : public store::Store {
  public:
    explicit FailingStore(std::unique_ptr<store::Store> real) : real_(std::move(real)) {}
    ~FailingStore() override { real_->Shutdown(); }
    FailingStore(const FailingStore&) = delete;
    FailingStore& operator=(const FailingStore&) = delete;

    /// See FailCount::Arm.
    void Arm(std::int64_t n, store::ErrorKind kind = store::ErrorKind::kTransient) {
        count_.Arm(n, kind);
    }
    void Disarm() { count_.Disarm(); }
    bool Fired() const { return count_.Fired(); }
    std::string FiredAt() const { return count_.FiredAt(); }
    std::int64_t TxCalls() const { return count_.Calls(); }
    std::int64_t Writes() const { return writes_.load(); }

    /// The `n`-th Write() from now (0-based) commits but reports kInDoubt; one per arming.
    void ArmLostAck(std::int64_t n) {
        ack_lost_.store(false);
        ack_remaining_.store(n);
    }
    void DisarmLostAck() { ack_remaining_.store(-1); }
    /// True when an acknowledgement has been lost since the last ArmLostAck().
    bool AckLost() const { return ack_lost_.load(); }

    /// Called at the start of every Write(), on the caller's thread, with the number of
    /// Write() calls before it; lets a test act while a commit is in flight. Set it only while
    /// no Write() is running; empty by default.
    void OnWrite(std::function<void(std::int64_t)> hook) { on_write_ = std::move(hook); }
    std::int64_t Reads() const { return reads_.load(); }

    /// The decorated store, for reading the truth behind the injector's back.
    store::Store& real() { return *real_; }

    void Write(store::Job job, std::function<void(store::Status)> done) override {
        const std::int64_t index = writes_.fetch_add(1);
        if (on_write_) on_write_(index);
        if (TakeLostAck()) {
            real_->Write(Wrap(std::move(job)), [this, done = std::move(done)](store::Status st) {
                if (st.ok()) {
                    ack_lost_.store(true);
                    st = {store::ErrorKind::kInDoubt, "injected: commit outcome unknown"};
                }
                done(std::move(st));
            });
            return;
        }
        real_->Write(Wrap(std::move(job)), std::move(done));
    }
    void Read(store::Job job, std::function<void(store::Status)> done) override {
        reads_.fetch_add(1);
        real_->Read(Wrap(std::move(job)), std::move(done));
    }
    bool Healthy() const override { return real_->Healthy(); }
    void Shutdown() override { real_->Shutdown(); }

  private:
    bool TakeLostAck() {
        std::int64_t cur = ack_remaining_.load();
        while (cur >= 0)
            if (ack_remaining_.compare_exchange_weak(cur, cur - 1)) return cur == 0;
        return false;
    }

    store::Job Wrap(store::Job job) {
        return [this, job = std::move(job)](store::Tx& tx) {
            FailingTx failing(tx, count_);
            return job(failing);
        };
    }

    std::unique_ptr<store::Store> real_;
    FailCount count_;
    std::atomic<std::int64_t> writes_{0};
    std::atomic<std::int64_t> reads_{0};
    std::atomic<std::int64_t> ack_remaining_{-1};
    std::atomic<bool> ack_lost_{false};
    std::function<void(std::int64_t)> on_write_;
};

}  // namespace rollsafe::testing
