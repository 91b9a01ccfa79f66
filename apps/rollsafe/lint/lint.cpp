#include "lint/lint.hpp"

#include <algorithm>
#include <cctype>
#include <deque>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <set>
#include <sstream>
#include <tuple>

#include "lint/rules.hpp"
#include "lint/yaml_access.hpp"

namespace rollsafe::lint {
namespace fs = std::filesystem;

namespace {

bool IsKustomizationName(const std::string& file_name) {
    return file_name == "kustomization.yaml" || file_name == "kustomization.yml" ||
           file_name == "Kustomization";
}

/// One YAML document of a stream, cut at its `---` line.
struct Piece {
    std::string text;
    int line = 0;         ///< 0-based line of the stream where it starts
    std::size_t pos = 0;  ///< offset in the stream where it starts
};

/// A `---` (or `...`) at the start of a line, alone or before a space: YAML forbids it as
/// content at column 0, so it always marks a document.
bool IsMarkerLine(std::string_view line, std::string_view marker) {
    return line.starts_with(marker) &&
           (line.size() == 3 || line[3] == ' ' || line[3] == '\t' || line[3] == '\r');
}

/// The documents of a stream, each parsed on its own: yaml-cpp 0.7's LoadAll loops forever,
/// allocating, on some malformed streams (a document starting with ','; yaml-cpp #1040,
/// fixed upstream in 0.8.x+), while Load reads one document and stops.
std::vector<Piece> SplitDocuments(const std::string& text) {
    std::vector<Piece> pieces(1);
    std::size_t start = 0;
    int line = 0;
    while (start < text.size()) {
        std::size_t end = text.find('\n', start);
        if (end == std::string::npos) end = text.size();
        const std::string_view l(text.data() + start, end - start);
        if (IsMarkerLine(l, "---") && !pieces.back().text.empty())
            pieces.push_back(Piece{"", line, start});
        pieces.back().text.append(text, start, end - start + (end < text.size() ? 1 : 0));
        start = end + 1;
        ++line;
    }
    return pieces;
}

bool ReadWholeFile(const fs::path& path, std::string* text, std::string* error) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        *error = "cannot open " + path.string();
        return false;
    }
    text->assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    if (in.bad()) {
        *error = "cannot read " + path.string();
        return false;
    }
    return true;
}

Source FileSource(const fs::path& path) {
    Source s;
    s.name = path.string();
    const std::string ext = path.extension().string();
    s.kind = ext == ".conf" ? Source::Kind::kNginx : Source::Kind::kYaml;
    s.kustomization = IsKustomizationName(path.filename().string());
    std::string error;
    if (!ReadWholeFile(path, &s.text, &error)) s.read_error = error;
    return s;
}

/// The string elements of a list, and the `path:` of its map elements.
std::vector<std::string> Paths(const YAML::Node& list) {
    std::vector<std::string> out;
    for (const auto& item : Items(list)) {
        if (auto s = Str(item)) out.push_back(*s);
        if (auto p = Str(At(item, {"path"}))) out.push_back(*p);
    }
    return out;
}

/// Files that a kustomization in `dir` names as patches, and reads its generators' env files
/// into `*k`.
std::vector<fs::path> ReadKustomization(const fs::path& dir, Source* k) {
    std::vector<fs::path> patches;
    if (!k->read_error.empty()) return patches;
    std::vector<YAML::Node> docs;
    for (const Piece& piece : SplitDocuments(k->text)) {
        try {
            docs.push_back(YAML::Load(piece.text));
        } catch (const std::exception&) {
            // Reported when the kustomization itself is linted.
        }
    }
    for (const auto& doc : docs) {
        for (std::string_view key : {"patches", "patchesStrategicMerge", "patchesJson6902"})
            for (const auto& p : Paths(At(doc, {key})))
                patches.push_back((dir / p).lexically_normal());
        for (const auto& gen : Items(At(doc, {"configMapGenerator"}))) {
            std::vector<std::string> envs = Paths(At(gen, {"envs"}));
            if (auto legacy = Str(At(gen, {"env"}))) envs.push_back(*legacy);
            for (const auto& e : envs) {
                std::string text;
                std::string ignored;
                if (ReadWholeFile(dir / e, &text, &ignored)) k->env_files[e] = text;
            }
        }
    }
    return patches;
}

bool Lintable(const fs::path& p) {
    const std::string ext = p.extension().string();
    return ext == ".yaml" || ext == ".yml" || ext == ".conf" ||
           IsKustomizationName(p.filename().string());
}

void CollectDirectory(const fs::path& dir, std::vector<Source>* out) {
    std::vector<fs::path> files;
    std::error_code ec;
    fs::recursive_directory_iterator it(dir, fs::directory_options::skip_permission_denied, ec);
    for (; !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
        const fs::path& p = it->path();
        std::error_code type_ec;
        if (it->is_directory(type_ec)) {
            // .git, .github and friends hold no manifests of the deployment.
            if (p.filename().string().starts_with(".")) it.disable_recursion_pending();
            continue;
        }
        if (it->is_regular_file(type_ec) && Lintable(p)) files.push_back(p);
    }
    std::sort(files.begin(), files.end());
    std::vector<Source> sources;
    std::set<fs::path> skip;
    for (const auto& f : files) {
        sources.push_back(FileSource(f));
        if (sources.back().kustomization)
            for (auto& p : ReadKustomization(f.parent_path(), &sources.back())) skip.insert(p);
    }
    for (std::size_t i = 0; i < files.size(); ++i)
        if (skip.count(files[i].lexically_normal()) == 0) out->push_back(std::move(sources[i]));
}

std::string Trim(std::string_view s) {
    std::size_t b = 0;
    std::size_t e = s.size();
    while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
    while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
    return std::string(s.substr(b, e - b));
}

/// A kong.conf is `key = value` lines; nginx never starts a line with `word =`.
bool LooksLikeKongConf(const std::string& text) {
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) {
        const std::string t = Trim(line.substr(0, line.find('#')));
        if (t.empty()) continue;
        std::size_t i = 0;
        while (i < t.size() && (std::isalnum(static_cast<unsigned char>(t[i])) || t[i] == '_')) ++i;
        if (i == 0) return false;
        while (i < t.size() && (t[i] == ' ' || t[i] == '\t')) ++i;
        return i < t.size() && t[i] == '=';
    }
    return false;
}

/// KEY=VALUE lines (an env file, a configMapGenerator literal); `#` starts a comment line.
void ReadEnvLines(const std::string& text, std::map<std::string, std::string>* data) {
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) {
        const std::string t = Trim(line);
        if (t.empty() || t.front() == '#') continue;
        const auto eq = t.find('=');
        if (eq == std::string::npos || eq == 0) continue;
        (*data)[Trim(t.substr(0, eq))] = Trim(t.substr(eq + 1));
    }
}

/// For a document that yaml-cpp read as empty: the 1-based line (within it) of content that
/// is not a comment, a directive, a marker or an explicit null; nullopt when there is none.
std::optional<int> UnreadContent(const std::string& text) {
    std::istringstream in(text);
    int n = 0;
    for (std::string raw; std::getline(in, raw);) {
        ++n;
        std::string t = Trim(raw);
        if (IsMarkerLine(t, "---") || IsMarkerLine(t, "...")) t = Trim(t.substr(3));
        if (t.empty() || t.front() == '#' || t.front() == '%') continue;
        if (t == "~" || t == "null" || t == "Null" || t == "NULL") continue;
        return n;
    }
    return std::nullopt;
}

class Builder {
  public:
    Builder(Model* model, std::vector<Finding>* out) : model_(model), out_(out) {}

    void Add(const Source& src) {
        if (!src.read_error.empty()) {
            out_->push_back(Finding{src.name, 0, 0, Severity::kError, "parse", src.read_error,
                                    "check the path and its permissions"});
            return;
        }
        if (src.kind == Source::Kind::kNginx) {
            AddConf(src, src.name, 0);
        } else {
            AddYaml(src, src.text, 0, /*embedded=*/false);
        }
    }

  private:
    void AddConf(const Source& src, const std::string& file_name, int line_offset) {
        if (LooksLikeKongConf(src.text)) {
            KongConfFile f{&src, line_offset, {}};
            std::istringstream in(src.text);
            int line = 0;
            for (std::string raw; std::getline(in, raw);) {
                ++line;
                const std::string t = Trim(raw.substr(0, raw.find('#')));
                const auto eq = t.find('=');
                if (t.empty() || eq == std::string::npos) continue;
                f.entries[Trim(t.substr(0, eq))] = {Trim(t.substr(eq + 1)), line + line_offset};
            }
            model_->kong_conf.push_back(std::move(f));
            return;
        }
        NginxFile f;
        f.source = &src;
        f.line_offset = line_offset;
        f.file_name = fs::path(file_name).filename().string();
        NginxParseError err;
        if (!ParseNginxConf(src.text, &f.conf, &err)) {
            out_->push_back(Finding{src.name, err.line + line_offset,
                                    line_offset == 0 ? err.column : 0, Severity::kError, "parse",
                                    "nginx syntax: " + err.message,
                                    "fix the syntax (`nginx -t` shows the same error)"});
            return;
        }
        model_->nginx.push_back(std::move(f));
    }

    void AddYaml(const Source& src, const std::string& text, int line_offset, bool embedded) {
        for (const Piece& piece : SplitDocuments(text)) {
            YAML::Node root;
            try {
                root = YAML::Load(piece.text);
            } catch (const YAML::Exception& e) {
                const int line = e.mark.is_null() ? 0 : e.mark.line + 1;
                const int col = e.mark.is_null() || embedded ? 0 : e.mark.column + 1;
                out_->push_back(Finding{src.name, line == 0 ? 0 : line + piece.line + line_offset,
                                        col, Severity::kError, "parse", "YAML syntax: " + e.msg,
                                        "fix the YAML syntax (indentation, quotes, ':' and '-')"});
                continue;
            } catch (const std::exception& e) {
                out_->push_back(Finding{src.name, piece.line + 1 + line_offset, 0, Severity::kError,
                                        "parse", std::string("cannot parse YAML: ") + e.what(),
                                        ""});
                continue;
            }
            if (root.IsNull()) {
                // yaml-cpp 0.7 reads some garbage (a leading ',') as an empty document.
                if (auto at = UnreadContent(piece.text))
                    out_->push_back(
                        Finding{src.name, *at + piece.line + line_offset, 0, Severity::kError,
                                "parse", "YAML syntax: this document cannot be read",
                                "fix the YAML syntax (indentation, quotes, ':' and '-')"});
                continue;
            }
            if (!root.IsMap()) continue;
            YamlDoc doc{&src, root, line_offset + piece.line, piece.pos, !embedded};
            if (src.kustomization && !embedded) {
                AddGenerators(src, root);
            } else if (Get(root, "_format_version")) {
                model_->kong.push_back(doc);
            } else if (!embedded && !KindOf(root).empty()) {
                AddObject(doc);
            }
        }
    }

    void AddObject(const YamlDoc& doc) {
        const std::string kind = KindOf(doc.root);
        if (kind == "List") {
            for (const auto& item : Items(At(doc.root, {"items"})))
                if (item.IsMap() && !KindOf(item).empty())
                    AddObject(
                        YamlDoc{doc.source, item, doc.line_offset, doc.pos_offset, doc.columns});
            return;
        }
        model_->objects.push_back(doc);
        if (kind != "ConfigMap") return;
        ConfigMapData cm{NameOf(doc.root), NamespaceOf(doc.root), {}};
        const YAML::Node data = At(doc.root, {"data"});
        if (data.IsMap()) {
            for (auto it = data.begin(); it != data.end(); ++it) {
                auto key = Str(it->first);
                auto value = Str(it->second);
                if (!key || !value) continue;
                cm.data[*key] = *value;
                AddEmbedded(doc, *key, it->second);
            }
        }
        model_->config_maps.push_back(std::move(cm));
    }

    /// A gateway configuration mounted from a ConfigMap (nginx.conf, kong.yml) is linted in
    /// place, with lines counted from the value's first line.
    void AddEmbedded(const YamlDoc& doc, const std::string& key, const YAML::Node& value) {
        const std::string ext = fs::path(key).extension().string();
        if (ext != ".conf" && ext != ".yaml" && ext != ".yml") return;
        const YAML::Mark m = value.Mark();
        if (m.is_null()) return;
        const std::string& text = doc.source->text;
        // A block scalar ('|' or '>') starts on the line after its indicator.
        const std::size_t pos = doc.pos_offset + static_cast<std::size_t>(std::max(m.pos, 0));
        const bool block = pos < text.size() && (text[pos] == '|' || text[pos] == '>');
        const int offset = doc.line_offset + m.line + (block ? 1 : 0);
        embedded_.push_back(Source{doc.source->name,
                                   value.Scalar(),
                                   ext == ".conf" ? Source::Kind::kNginx : Source::Kind::kYaml,
                                   false,
                                   {},
                                   ""});
        const Source& src = embedded_.back();
        if (src.kind == Source::Kind::kNginx) {
            AddConf(src, key, offset);
        } else {
            AddYaml(src, src.text, offset, /*embedded=*/true);
        }
    }

    void AddGenerators(const Source& src, const YAML::Node& kustomization) {
        const std::string ns = Str(At(kustomization, {"namespace"})).value_or("");
        for (const auto& gen : Items(At(kustomization, {"configMapGenerator"}))) {
            auto name = Str(At(gen, {"name"}));
            if (!name) continue;
            ConfigMapData cm{*name, Str(At(gen, {"namespace"})).value_or(ns), {}};
            for (const auto& literal : Items(At(gen, {"literals"})))
                if (auto s = Str(literal)) ReadEnvLines(*s, &cm.data);
            std::vector<std::string> envs = Paths(At(gen, {"envs"}));
            if (auto legacy = Str(At(gen, {"env"}))) envs.push_back(*legacy);
            for (const auto& e : envs)
                if (auto it = src.env_files.find(e); it != src.env_files.end())
                    ReadEnvLines(it->second, &cm.data);
            model_->config_maps.push_back(std::move(cm));
        }
    }

    Model* model_;
    std::vector<Finding>* out_;
    /// Sources cut out of ConfigMaps; a deque, so that the model's pointers stay valid.
    std::deque<Source> embedded_;
};

}  // namespace

Finding MakeFinding(const YamlDoc& doc, const YAML::Node& node, std::string rule, Severity severity,
                    std::string message, std::string fix) {
    const int line = Line(node);
    return Finding{doc.source->name,
                   line == 0 ? 0 : line + doc.line_offset,
                   doc.columns ? Column(node) : 0,
                   severity,
                   std::move(rule),
                   std::move(message),
                   std::move(fix)};
}

std::string KindOf(const YAML::Node& object) { return Str(At(object, {"kind"})).value_or(""); }
std::string NameOf(const YAML::Node& object) {
    return Str(At(object, {"metadata", "name"})).value_or("");
}
std::string NamespaceOf(const YAML::Node& object) {
    return Str(At(object, {"metadata", "namespace"})).value_or("");
}

bool CollectSources(const std::vector<std::string>& paths, std::istream& in,
                    std::vector<Source>* out, std::string* error) {
    std::vector<Source> sources;
    for (const auto& p : paths) {
        if (p == "-") {
            Source s;
            s.name = "<stdin>";
            s.text.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
            sources.push_back(std::move(s));
            continue;
        }
        std::error_code ec;
        const fs::file_status st = fs::status(p, ec);
        if (ec || !fs::exists(st)) {
            *error = "no such file or directory: " + p;
            return false;
        }
        if (fs::is_directory(st)) {
            CollectDirectory(p, &sources);
        } else {
            sources.push_back(FileSource(p));
        }
    }
    // A file named twice (itself and inside a named directory) is linted once.
    std::set<std::string> seen;
    for (auto& s : sources) {
        std::error_code ec;
        const std::string key =
            s.name == "<stdin>" ? "" : fs::weakly_canonical(s.name, ec).string();
        if (!key.empty() && !seen.insert(key).second) continue;
        out->push_back(std::move(s));
    }
    return true;
}

int LintReport::Errors() const {
    return static_cast<int>(std::count_if(findings.begin(), findings.end(), [](const Finding& f) {
        return f.severity == Severity::kError;
    }));
}

int LintReport::Warnings() const { return static_cast<int>(findings.size()) - Errors(); }

LintReport LintSources(const std::vector<Source>& sources) {
    LintReport report;
    report.files = static_cast<int>(sources.size());
    Model model;
    Builder builder(&model, &report.findings);
    auto guarded = [&](const std::string& file, auto&& step) {
        // The rules read every node through yaml_access.hpp and should not throw; should one
        // still do so, the run reports it instead of aborting.
        try {
            step();
        } catch (const std::exception& e) {
            report.findings.push_back(Finding{file, 0, 0, Severity::kError, "parse",
                                              std::string("internal error: ") + e.what(),
                                              "please report this file"});
        }
    };
    for (const auto& src : sources) guarded(src.name, [&] { builder.Add(src); });
    const std::string all = sources.size() == 1 ? sources.front().name : "(all files)";
    IdleTimeout idle;
    guarded(all, [&] { idle = ServiceIdleTimeout(model); });
    guarded(all, [&] { CheckWorkloads(model, &report.findings); });
    guarded(all, [&] { CheckKong(model, idle, &report.findings); });
    guarded(all, [&] { CheckNginx(model, idle, &report.findings); });
    std::stable_sort(report.findings.begin(), report.findings.end(),
                     [](const Finding& a, const Finding& b) {
                         return std::tie(a.file, a.line, a.rule) < std::tie(b.file, b.line, b.rule);
                     });
    return report;
}

}  // namespace rollsafe::lint
