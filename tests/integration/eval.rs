use crate::common::swdl;

#[test]
fn placeholder_until_expressions_land() {
  swdl(["eval", "null"]).status(0);
}
