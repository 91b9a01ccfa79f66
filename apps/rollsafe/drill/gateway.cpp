#include "drill/gateway.hpp"
