//! Message data (JSON) as template values.
//!
//! Every render turns the message's `data` into MiniJinja values once, shared
//! by subject, HTML and text. Going through serde (`Value::from_serialize`)
//! builds a `BTreeMap<Value, Value>` per object, checks every value and
//! copies every string; this walks the JSON directly instead: short strings
//! stay inline in the value (no allocation), objects become a flat list of
//! entries in the JSON's (sorted) key order, found by a scan when small and a
//! binary search when large.

use std::sync::Arc;

use minijinja::value::{Enumerator, Object, ObjectExt, ObjectRepr, Value};

/// `data` as a template value. A top-level object always has `brand` (empty
/// when the data has none), so templates can write `brand.x | default(…)`.
pub fn to_value(data: &serde_json::Value) -> Value {
    match data {
        serde_json::Value::Object(map) if !map.contains_key("brand") => {
            let mut entries = entries(map);
            let at = entries.partition_point(|e| e.cmp(prefix("brand"), "brand").is_lt());
            entries.insert(at, Entry::new("brand", Value::from_object(JsonMap::new(Vec::new()))));
            Value::from_object(JsonMap::new(entries))
        }
        _ => convert(data),
    }
}

fn convert(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::from(()),
        serde_json::Value::Bool(b) => Value::from(*b),
        serde_json::Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Value::from(i),
            (None, Some(u)) => Value::from(u),
            _ => Value::from(n.as_f64().unwrap_or(f64::NAN)),
        },
        serde_json::Value::String(s) => Value::from(s.as_str()),
        serde_json::Value::Array(items) => Value::from(items.iter().map(convert).collect::<Vec<_>>()),
        serde_json::Value::Object(map) => Value::from_object(JsonMap::new(entries(map))),
    }
}

/// Keys are string values: those up to 22 bytes (nearly all) are stored
/// inline, without an allocation.
fn entries(map: &serde_json::Map<String, serde_json::Value>) -> Vec<Entry> {
    map.iter().map(|(k, v)| Entry::new(k, convert(v))).collect()
}

/// One key and its value. `prefix` holds the key's first 8 bytes big-endian
/// (zero-padded): comparing it orders keys like comparing the strings, and
/// for keys of up to 8 bytes with equal lengths it *is* the comparison, so
/// a lookup rarely reads the key itself.
#[derive(Debug)]
struct Entry {
    prefix: u64,
    len: usize,
    key: Value,
    value: Value,
}

impl Entry {
    fn new(key: &str, value: Value) -> Self {
        Self { prefix: prefix(key), len: key.len(), key: Value::from(key), value }
    }

    fn key(&self) -> &str {
        self.key.as_str().unwrap_or_default()
    }

    fn cmp(&self, prefix: u64, wanted: &str) -> std::cmp::Ordering {
        self.prefix.cmp(&prefix).then_with(|| {
            if self.len <= 8 && wanted.len() <= 8 { self.len.cmp(&wanted.len()) } else { self.key().cmp(wanted) }
        })
    }
}

fn prefix(key: &str) -> u64 {
    // Computed for every lookup: a load for long keys, a few shifts for
    // short ones, and no call to `memcpy` (a variable-length copy was one).
    let bytes = key.as_bytes();
    match bytes.first_chunk::<8>() {
        Some(first) => u64::from_be_bytes(*first),
        None => bytes.iter().enumerate().fold(0, |p, (i, &b)| p | u64::from(b) << (56 - 8 * i)),
    }
}

/// A JSON object: its entries in key order.
#[derive(Debug)]
struct JsonMap {
    entries: Vec<Entry>,
    /// Keys strictly ascending (serde_json's default map is a `BTreeMap`);
    /// if ever not, lookups scan.
    sorted: bool,
}

/// Up to this many entries a scan beats a binary search.
const SCAN: usize = 12;

impl JsonMap {
    fn new(entries: Vec<Entry>) -> Self {
        let sorted = entries.windows(2).all(|w| w[0].cmp(w[1].prefix, w[1].key()).is_lt());
        Self { entries, sorted }
    }

    fn find(&self, wanted: &str) -> Option<&Value> {
        let p = prefix(wanted);
        if self.entries.len() <= SCAN || !self.sorted {
            self.entries.iter().find(|e| e.prefix == p && e.len == wanted.len() && (e.len <= 8 || e.key() == wanted))
        } else {
            self.entries.binary_search_by(|e| e.cmp(p, wanted)).ok().map(|i| &self.entries[i])
        }
        .map(|e| &e.value)
    }
}

impl Object for JsonMap {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        self.find(key.as_str()?).cloned()
    }

    fn get_value_by_str(self: &Arc<Self>, key: &str) -> Option<Value> {
        self.find(key).cloned()
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        self.mapped_enumerator(|this| Box::new(this.entries.iter().map(|e| e.key.clone())))
    }

    fn enumerator_len(self: &Arc<Self>) -> Option<usize> {
        Some(self.entries.len())
    }
}

#[cfg(test)]
mod tests {
    use minijinja::Environment;
    use serde_json::json;

    use super::to_value;

    fn render(src: &str, data: serde_json::Value) -> String {
        let env = Environment::new();
        env.render_str(src, to_value(&data)).unwrap()
    }

    #[test]
    fn json_reads_like_it_did_through_serde() {
        let data = json!({
            "name": "Ana", "n": 3, "big": 18446744073709551615u64, "x": 1.5, "t": true, "none": null,
            "items": [{"a": 1}, {"a": 2}],
            "many": (0..40).map(|i| (format!("k{i:02}"), json!(i))).collect::<serde_json::Map<_, _>>(),
            "long": (0..20).map(|i| (format!("shared_prefix_{i}"), json!(i))).chain([("shared".into(), json!("s")), ("shared\u{0}".into(), json!("z"))]).collect::<serde_json::Map<_, _>>(),
        });
        let src = "{{ name }} {{ n + 1 }} {{ big }} {{ x * 2 }} {{ t }} {{ none is none }} \
                   {% for i in items %}{{ i.a }}{% endfor %} {{ items | length }} {{ many.k07 }} {{ many.k39 }} \
                   {{ many | length }} {{ many.nope is undefined }} {{ items[1]['a'] }} \
                   {% for k, v in items[0] | items %}{{ k }}={{ v }}{% endfor %} {{ items[0] | tojson }} \
                   {{ long.shared_prefix_0 }}{{ long.shared_prefix_19 }}{{ long.shared_prefix_7 }}{{ long.shared }}{{ long['shared\x00'] }}{{ long.shared_prefix_20 is undefined }}";
        let direct = render(src, data.clone());
        let via_serde = Environment::new().render_str(src, minijinja::Value::from_serialize(&data)).unwrap();
        assert_eq!(direct, via_serde);
        assert_eq!(direct, "Ana 4 18446744073709551615 3.0 True True 12 2 7 39 40 True 2 a=1 {\"a\":1} 0197szTrue");
    }

    #[test]
    fn prefixes_order_like_the_keys() {
        use super::prefix;
        assert_eq!(prefix(""), 0);
        assert_eq!(prefix("a"), 0x6100_0000_0000_0000);
        assert_eq!(prefix("abcdefgh"), u64::from_be_bytes(*b"abcdefgh"));
        assert_eq!(prefix("abcdefghij"), prefix("abcdefgh"));
        let mut keys = ["b", "a", "ab", "abcdefg", "abcdefgh", "zz", "a\u{0}", "é", "Z"];
        keys.sort();
        assert!(keys.windows(2).all(|w| prefix(w[0]) <= prefix(w[1])));
    }

    #[test]
    fn brand_is_added_in_key_order_unless_the_data_has_one() {
        // Keys on both sides of `brand`, more than a scan covers: it goes in its
        // place, so the map stays sorted and lookups binary-search.
        let mut data: serde_json::Map<String, serde_json::Value> =
            (0..20).map(|i| (format!("a{i:02}"), json!(i))).collect();
        data.extend((0..5).map(|i| (format!("c{i:02}"), json!(i))));
        let value = to_value(&serde_json::Value::Object(data.clone()));
        let map = value.downcast_object_ref::<super::JsonMap>().expect("a JSON map");
        assert!(map.sorted && map.entries.len() == 26);
        let src = "{{ brand | length }} {{ brand.company_name | default('none') }} {{ a00 }} {{ a19 }} {{ c04 }}";
        assert_eq!(render(src, serde_json::Value::Object(data)), "0 none 0 19 4");
        let own = render("{{ brand.company_name }}", json!({"brand": {"company_name": "Own"}}));
        assert_eq!(own, "Own");
    }
}
