/// @file
/// @brief What the rule files (k8s_rules.cpp, kong_rules.cpp, nginx_rules.cpp) see: every
/// linted document, already parsed and classified by lint.cpp, and one entry point per file.
///
/// Rules read documents only through yaml_access.hpp (no yaml-cpp call that throws) and add
/// findings; a field of the wrong type becomes a `parse` finding, never an exception.
#pragma once

#include <yaml-cpp/yaml.h>

#include <chrono>
#include <cstddef>
#include <map>
#include <string>
#include <vector>

#include "lint/finding.hpp"
#include "lint/lint.hpp"
#include "lint/nginx_conf.hpp"

namespace rollsafe::lint {

/// One YAML document of a source.
struct YamlDoc {
    const Source* source = nullptr;
    YAML::Node root;
    /// Added to yaml-cpp's lines: where the document starts in its file (each document is
    /// parsed on its own), plus where an embedded one starts in its ConfigMap value.
    int line_offset = 0;
    /// Added to yaml-cpp's positions: where the document starts in its source's text.
    std::size_t pos_offset = 0;
    /// False for a document cut out of a ConfigMap value: its indentation was stripped, so
    /// yaml-cpp's columns are not the file's.
    bool columns = true;
};

/// A parsed nginx file.
struct NginxFile {
    const Source* source = nullptr;
    int line_offset = 0;
    std::string file_name;  ///< the last path component, for matching `include` arguments
    NginxConf conf;
};

/// A kong.conf: `key = value` lines.
struct KongConfFile {
    const Source* source = nullptr;
    int line_offset = 0;
    struct Value {
        std::string text;
        int line = 0;  ///< 1-based, offset applied
    };
    std::map<std::string, Value> entries;
};

/// The data of a ConfigMap object or of a kustomize configMapGenerator, for env lookups.
struct ConfigMapData {
    std::string name;
    std::string name_space;  ///< empty when not given
    std::map<std::string, std::string> data;
};

/// Every linted document, classified.
struct Model {
    std::vector<YamlDoc> objects;  ///< Kubernetes objects: a string `kind` (List items expanded)
    std::vector<YamlDoc> kong;     ///< Kong declarative configs: a `_format_version` key
    std::vector<NginxFile> nginx;
    std::vector<KongConfFile> kong_conf;
    std::vector<ConfigMapData> config_maps;
};

/// A finding at `node` of `doc` (the line of a key node is the line of `key:`).
Finding MakeFinding(const YamlDoc& doc, const YAML::Node& node, std::string rule, Severity severity,
                    std::string message, std::string fix);

/// The `kind` of a Kubernetes object ("" when absent or not a string).
std::string KindOf(const YAML::Node& object);

/// The metadata.name and metadata.namespace of an object ("" when absent).
std::string NameOf(const YAML::Node& object);
std::string NamespaceOf(const YAML::Node& object);

/// The service's idle keep-alive timeout that gateways must stay below (RS006), and where it
/// comes from, for messages.
struct IdleTimeout {
    std::chrono::milliseconds value{75'000};
    std::string source = "the default";
};

/// The smallest --idle-timeout of the rollsafe containers in `model` (flags, env and
/// ConfigMaps resolved like RS001's settings); the 75 s default when there are none.
IdleTimeout ServiceIdleTimeout(const Model& model);

/// RS001-RS005 and RS010 on every Deployment and StatefulSet with a rollsafe container.
void CheckWorkloads(const Model& model, std::vector<Finding>* out);

/// RS006-RS009 on Kong declarative configs, kong.conf files and KongUpstreamPolicy objects.
void CheckKong(const Model& model, const IdleTimeout& idle, std::vector<Finding>* out);

/// RS006-RS008 on nginx files, ingress-nginx Ingress annotations and its controller
/// ConfigMap.
void CheckNginx(const Model& model, const IdleTimeout& idle, std::vector<Finding>* out);

}  // namespace rollsafe::lint
