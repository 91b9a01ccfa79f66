#include "rollsafe/http/router.hpp"

#include <algorithm>

namespace rollsafe::http {
namespace {

std::vector<std::string> Split(std::string_view path) {
    std::vector<std::string> out;
    std::size_t i = 0;
    if (!path.empty() && path[0] == '/') i = 1;
    while (i <= path.size()) {
        const std::size_t j = path.find('/', i);
        const std::size_t end = j == std::string_view::npos ? path.size() : j;
        out.emplace_back(path.substr(i, end - i));
        if (j == std::string_view::npos) break;
        i = j + 1;
    }
    return out;
}

bool Matches(const std::vector<std::string>& pattern, const std::vector<std::string>& path,
             std::vector<std::pair<std::string, std::string>>* params) {
    if (pattern.size() != path.size()) return false;
    for (std::size_t i = 0; i < pattern.size(); ++i) {
        const auto& p = pattern[i];
        if (p.size() >= 2 && p.front() == '{' && p.back() == '}') {
            if (path[i].empty()) return false;
            if (params) params->emplace_back(p.substr(1, p.size() - 2), path[i]);
        } else if (p != path[i]) {
            return false;
        }
    }
    return true;
}

}  // namespace

void Router::Add(std::string method, std::string pattern, Handler handler) {
    auto segments = Split(pattern);
    routes_.push_back(
        {std::move(method), std::move(pattern), std::move(segments), std::move(handler)});
}

Router::Match Router::Find(Request& req) const {
    const auto path = Split(req.path);
    Match m;
    std::vector<std::string_view> allowed;
    for (const auto& r : routes_) {
        if (!Matches(r.segments, path, nullptr)) continue;
        if (r.method == req.method) {
            req.params.clear();
            Matches(r.segments, path, &req.params);
            m.handler = &r.handler;
            m.route = r.pattern;
            m.status = 0;
            return m;
        }
        if (std::find(allowed.begin(), allowed.end(), r.method) == allowed.end()) {
            if (!m.allow.empty()) m.allow += ", ";
            m.allow += r.method;
            allowed.push_back(r.method);
        }
        m.route = r.pattern;
    }
    m.status = m.allow.empty() ? 404 : 405;
    if (m.status == 404) m.route = "unmatched";
    return m;
}

}  // namespace rollsafe::http
