// `rollsafe drill --target URL --rollout-cmd CMD` against a deployment it did not start: two
// replicas on fixed ports behind an nginx, restarted one by one by a shell script, the way
// `kubectl rollout restart` replaces pods. The drill only sees the gateway URL and checks every
// acknowledged write back through the API.
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "testing/mini_json.hpp"
#include "testing/process.hpp"
#include "testing/temp_dir.hpp"

namespace rollsafe::testing {
namespace {

using namespace std::chrono_literals;

/// A free port on 127.0.0.1 (bound to 0, read back, released): the replicas must come back on
/// the same port after a restart, as a pod's Service address stays the same.
std::uint16_t FreePort() {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
    socklen_t len = sizeof a;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    ::close(fd);
    return ntohs(a.sin_port);
}

std::string ReadFile(const std::string& path) {
    std::ifstream f(path);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

void WriteFile(const std::string& path, const std::string& text) {
    std::ofstream f(path);
    f << text;
}

/// Starts, restarts and stops replicas outside the drill's process tree (setsid), recording
/// each one's pid in DIR/NAME.pid. `restart` replaces each replica in turn: SIGTERM, wait for
/// the exit, start a new process on the same port, wait for /readyz. With FRESH_DB set the new
/// replicas get an empty database, which loses every earlier write.
constexpr const char* kReplicasScript = R"SH(#!/usr/bin/env bash
set -euo pipefail
DIR=$1 BIN=$2 DB=$3 CMD=$4
shift 4
start() {
  local db=$DB
  if [[ -n ${FRESH_DB:-} ]]; then db=$DIR/fresh.db; fi
  setsid "$BIN" serve --listen "127.0.0.1:$2" --admin-listen 127.0.0.1:0 --store "sqlite:$db" \
    --threads 1 --drain-delay 1s --shutdown-timeout 10s --name "$1" \
    </dev/null >>"$DIR/$1.log" 2>&1 &
  echo $! >"$DIR/$1.pid"
  for _ in $(seq 1 200); do
    if curl -sf -o /dev/null --noproxy '*' "http://127.0.0.1:$2/readyz"; then return 0; fi
    sleep 0.05
  done
  echo "$1 did not become ready" >&2
  return 1
}
stop() {
  local pid
  pid=$(cat "$DIR/$1.pid")
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 400); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.05
  done
  kill -KILL "$pid" 2>/dev/null || true
}
while [[ $# -gt 0 ]]; do
  case $CMD in
    start) start "$1" "$2" ;;
    restart) echo "restarting $1"; stop "$1"; start "$1" "$2"; sleep 0.5 ;;
    stop) stop "$1" ;;
  esac
  shift 2
done
)SH";

class BlackBoxDeployment {
  public:
    BlackBoxDeployment() {
        WriteFile(dir_.File("replicas.sh"), kReplicasScript);
        ports_ = {FreePort(), FreePort()};
        gateway_port_ = FreePort();
        const std::string prefix = dir_.File("nginx");
        std::filesystem::create_directories(prefix + "/logs");
        std::ostringstream conf;
        conf << "daemon on; worker_processes 1; pid " << prefix << "/nginx.pid;\n"
             << "error_log " << prefix << "/error.log notice;\n"
             << "events { worker_connections 1024; }\n"
             << "http {\n  access_log off;\n"
             << "  client_body_temp_path " << prefix << "/tmp_body;\n"
             << "  proxy_temp_path " << prefix << "/tmp_proxy;\n"
             << "  upstream api {\n"
             << "    server 127.0.0.1:" << ports_[0] << ";\n"
             << "    server 127.0.0.1:" << ports_[1] << ";\n"
             << "    keepalive 16;\n  }\n"
             << "  server {\n    listen 127.0.0.1:" << gateway_port_ << ";\n"
             << "    location / {\n      proxy_pass http://api;\n"
             // The proxy and retry settings we ship (deploy/nginx/), not a copy of them.
             << "      include " << ROLLSAFE_SOURCE_DIR << "/deploy/nginx/rollsafe-proxy.conf;\n"
             << "      include " << ROLLSAFE_SOURCE_DIR << "/deploy/nginx/rollsafe-retry.conf;\n"
             << "    }\n  }\n}\n";
        WriteFile(prefix + "/nginx.conf", conf.str());
        const auto replicas = Replicas("start");
        if (replicas.exit_code != 0)
            throw std::runtime_error("replicas did not start: " + replicas.err);
        const auto nginx = RunProcess({"nginx", "-p", prefix, "-c", prefix + "/nginx.conf"}, 20s);
        if (nginx.exit_code != 0) throw std::runtime_error("nginx did not start: " + nginx.err);
        nginx_started_ = true;
    }
    ~BlackBoxDeployment() {
        if (nginx_started_)
            RunProcess({"nginx", "-p", dir_.File("nginx"), "-c", dir_.File("nginx/nginx.conf"),
                        "-s", "stop"},
                       20s);
        Replicas("stop");
    }

    ProcessResult Replicas(const std::string& cmd) {
        std::vector<std::string> argv = {"bash",           dir_.File("replicas.sh"), dir_.Path(),
                                         RollsafeBinary(), dir_.File("db"),          cmd};
        for (std::size_t i = 0; i < ports_.size(); ++i) {
            argv.push_back("replica-" + std::to_string(i + 1));
            argv.push_back(std::to_string(ports_[i]));
        }
        return RunProcess(argv, 60s);
    }

    /// The rollout command the drill runs: restart every replica, one at a time.
    std::string RolloutCommand(bool fresh_db) const {
        std::string cmd = std::string(fresh_db ? "FRESH_DB=1 " : "") + "bash " +
                          dir_.File("replicas.sh") + " " + dir_.Path() + " " + RollsafeBinary() +
                          " " + dir_.File("db") + " restart";
        for (std::size_t i = 0; i < ports_.size(); ++i)
            cmd += " replica-" + std::to_string(i + 1) + " " + std::to_string(ports_[i]);
        return cmd;
    }

    std::string Url() const { return "http://127.0.0.1:" + std::to_string(gateway_port_); }
    const TempDir& Dir() const { return dir_; }

  private:
    TempDir dir_;
    std::vector<std::uint16_t> ports_;
    std::uint16_t gateway_port_ = 0;
    bool nginx_started_ = false;
};

std::vector<std::string> BlackBoxDrill(const BlackBoxDeployment& d, const std::string& cmd,
                                       const std::string& report) {
    return {RollsafeBinary(), "drill",
            "--target",       d.Url(),
            "--rollout-cmd",  cmd,
            "--requests",     "200",
            "--concurrency",  "8",
            "--work-ms",      "0..500",
            "--max-duration", "60s",
            "--report",       report,
            "--work-dir",     d.Dir().File("drill")};
}

TEST(DrillBlackBox, RestartBehindAnExistingGatewayLosesNothing) {
    BlackBoxDeployment d;
    const std::string report_path = d.Dir().File("report.json");
    const auto r = RunProcess(BlackBoxDrill(d, d.RolloutCommand(false), report_path), 180s);
    ASSERT_TRUE(r.exit_code.has_value()) << "drill timed out\n" << r.out << r.err;
    EXPECT_EQ(*r.exit_code, 0) << r.out << r.err;
    EXPECT_NE(r.out.find("drill: PASS"), std::string::npos) << r.out;

    const auto report = ParseJson(ReadFile(report_path));
    ASSERT_TRUE(report && report->IsObject());
    EXPECT_EQ(report->Find("config")->GetString("mode"), "black-box");
    const JsonValue* v = report->Find("verdict");
    ASSERT_NE(v, nullptr);
    EXPECT_GE(v->GetNumber("requests").value_or(0), 200);
    EXPECT_EQ(v->GetNumber("acknowledged"), v->GetNumber("requests"));
    for (const char* k : {"failed", "lost", "duplicated", "balance_mismatches"})
        EXPECT_EQ(v->GetNumber(k), 0) << k;
    // The journal is out of sight in black-box mode; the report says so instead of passing it.
    EXPECT_FALSE(v->Find("half_done_checked")->AsBool());
    // The rollout really happened while the load ran: both replicas were replaced.
    const std::string log = ReadFile(d.Dir().File("drill/rollout-cmd.log"));
    EXPECT_NE(log.find("restarting replica-1"), std::string::npos) << log;
    EXPECT_NE(log.find("restarting replica-2"), std::string::npos) << log;
}

TEST(DrillBlackBox, ARolloutThatLosesTheDatabaseIsCaughtThroughTheApi) {
    BlackBoxDeployment d;
    const std::string report_path = d.Dir().File("report.json");
    const auto r = RunProcess(BlackBoxDrill(d, d.RolloutCommand(true), report_path), 180s);
    ASSERT_TRUE(r.exit_code.has_value()) << "drill timed out\n" << r.out << r.err;
    EXPECT_EQ(*r.exit_code, 1) << r.out << r.err;
    EXPECT_NE(r.out.find("drill: FAIL"), std::string::npos) << r.out;
    const auto report = ParseJson(ReadFile(report_path));
    ASSERT_TRUE(report && report->IsObject());
    const JsonValue* v = report->Find("verdict");
    ASSERT_NE(v, nullptr);
    // Writes acknowledged before the replicas moved to an empty database are gone.
    EXPECT_GT(v->GetNumber("lost").value_or(0) + v->GetNumber("balance_mismatches").value_or(0), 0)
        << r.out;
}

TEST(DrillBlackBox, ARolloutCommandThatFailsFailsTheDrill) {
    BlackBoxDeployment d;
    const std::string report_path = d.Dir().File("report.json");
    auto argv = BlackBoxDrill(d, "echo rollout refused >&2; exit 3", report_path);
    *(std::find(argv.begin(), argv.end(), "--requests") + 1) = "50";
    const auto r = RunProcess(argv, 120s);
    ASSERT_TRUE(r.exit_code.has_value()) << "drill timed out\n" << r.out << r.err;
    EXPECT_EQ(*r.exit_code, 1) << r.out << r.err;
    // Every write landed, yet the verdict fails and names the command.
    EXPECT_NE(r.out.find("drill: FAIL \u2014 the rollout command failed (exit 3)"),
              std::string::npos)
        << r.out;
    const auto report = ParseJson(ReadFile(report_path));
    ASSERT_TRUE(report && report->IsObject());
    EXPECT_EQ(report->Find("verdict")->GetNumber("lost"), 0);
    EXPECT_EQ(report->Find("verdict")->GetString("run_error"),
              "the rollout command failed (exit 3)");
}

}  // namespace
}  // namespace rollsafe::testing
