// rollsafe: one binary, one subcommand per folder. This file only dispatches.
#include <csignal>
#include <iostream>

#include <CLI/CLI.hpp>

#include "audit/cmd_audit.hpp"
#include "drill/cmd_drill.hpp"
#include "lint/cmd_lint.hpp"
#include "post/cmd_post.hpp"
#include "serve/cmd_serve.hpp"

#ifndef ROLLSAFE_VERSION
#define ROLLSAFE_VERSION "0.0.0"
#endif

int main(int argc, char** argv) {
    // A peer that closes early must cost us an error code, not the process.
    std::signal(SIGPIPE, SIG_IGN);
    CLI::App app{
        "rollsafe: HTTP POSTs that land exactly once while Kubernetes rolls, drains or kills pods"};
    app.set_version_flag("--version", std::string("rollsafe ") + ROLLSAFE_VERSION);
    app.require_subcommand(1);
    std::function<int()> run;
    rollsafe::serve::AddServeCommand(app, &run);
    rollsafe::audit::AddAuditCommand(app, &run);
    rollsafe::post::AddPostCommand(app, &run);
    rollsafe::drill::AddDrillCommand(app, &run);
    rollsafe::lint::AddLintCommand(app, &run);
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        const int code = app.exit(e);
        // Help and version are successes; every usage error exits 2.
        return code == 0 ? 0 : 2;
    }
    return run ? run() : 2;
}
