#include "rollsafe/util/log.hpp"

#include <unistd.h>

#include <boost/json/serialize.hpp>
#include <cerrno>

#include "rollsafe/util/clock.hpp"

namespace rollsafe::util {

void LogEvent(std::string_view event, boost::json::object fields) {
    boost::json::object line;
    line.reserve(fields.size() + 2);
    line["ts"] = FormatRfc3339(SystemClock::Instance().WallNow());
    line["event"] = event;
    for (auto& kv : fields) line[kv.key()] = std::move(kv.value());
    std::string text = boost::json::serialize(line);
    text += '\n';
    // One write(2) per line: with O_APPEND files and pipes below PIPE_BUF this keeps lines from
    // several threads and processes whole, without a lock.
    const char* p = text.data();
    std::size_t left = text.size();
    while (left > 0) {
        const ssize_t n = ::write(STDOUT_FILENO, p, left);
        if (n < 0) {
            if (errno == EINTR) continue;
            return;  // logging must never take the service down
        }
        p += n;
        left -= static_cast<std::size_t>(n);
    }
}

}  // namespace rollsafe::util
