#include "drill/report.hpp"
