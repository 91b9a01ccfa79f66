/// @file
/// @brief The `rollsafe lint` engine: which files are read, how they are classified, and the
/// findings of every rule (docs/lint.md) over all of them at once.
///
/// All linted files form one set: a PodDisruptionBudget in one file satisfies RS004 for a
/// Deployment in another, the service's --idle-timeout found in a Deployment is the one the
/// gateways' keep-alive timeouts are compared with (RS006), and an nginx `include` of a file
/// that is itself linted contributes that file's directives (nothing outside the set is ever
/// read). Nothing here throws on any file content; I/O errors surface as `parse` findings.
#pragma once

#include <istream>
#include <map>
#include <string>
#include <vector>

#include "lint/finding.hpp"

namespace rollsafe::lint {

/// One input text.
struct Source {
    enum class Kind {
        kYaml,   ///< Kubernetes objects or a Kong declarative config, maybe several documents
        kNginx,  ///< nginx configuration, or a kong.conf (recognized by its `key = value` lines)
    };
    std::string name;  ///< as the user named it (path or "<stdin>"), for findings
    std::string text;
    Kind kind = Kind::kYaml;
    /// A kustomization.yaml: read for configMapGenerator, never linted as an object.
    bool kustomization = false;
    /// For a kustomization: the text of each file its configMapGenerator `envs` name, by the
    /// name as written (relative to the kustomization's directory). Missing files are absent.
    std::map<std::string, std::string> env_files;
    /// A file that could not be read: reported as a parse finding instead of being linted.
    std::string read_error;
};

/// Expands `paths` into sources. A file is linted whatever its name (`*.conf` as nginx,
/// anything else as YAML); a directory is searched recursively for `*.yaml`, `*.yml` and
/// `*.conf`, in name order, skipping the files that a kustomization.yaml in the same directory
/// lists under `patches` (`path:`) or `patchesStrategicMerge`; "-" is YAML read from `in`.
/// Returns false with a sentence in `*error` when a path does not exist (a usage error).
bool CollectSources(const std::vector<std::string>& paths, std::istream& in,
                    std::vector<Source>* out, std::string* error);

/// What LintSources found.
struct LintReport {
    std::vector<Finding> findings;  ///< sorted by file, line, rule
    int files = 0;                  ///< sources read
    int Errors() const;
    int Warnings() const;
};

/// Runs every rule over `sources` together. Never throws.
LintReport LintSources(const std::vector<Source>& sources);

}  // namespace rollsafe::lint
