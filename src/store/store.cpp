#include "rollsafe/store/store.hpp"

#include <memory>

namespace rollsafe::store {

void Store::InsertResource(Resource r, std::function<void(Status)> done) {
    Write(
        [r = std::move(r)](Tx& tx) {
            tx.InsertResource(r);
            return Status::Ok();
        },
        std::move(done));
}

void Store::GetResource(std::string id, std::function<void(Status, std::optional<Resource>)> done) {
    auto found = std::make_shared<std::optional<Resource>>();
    Read(
        [id = std::move(id), found](Tx& tx) {
            *found = tx.GetResource(id);
            return Status::Ok();
        },
        [found, done = std::move(done)](Status st) { done(std::move(st), std::move(*found)); });
}

}  // namespace rollsafe::store
