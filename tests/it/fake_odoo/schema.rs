//! The models the fake knows, their fields (names and types as in Odoo 17.0) and the records a
//! fresh database holds (company, countries, units, the warehouse and its locations, journals,
//! taxes, payment terms) with their external ids.
//!
//! Only the fields careflow could plausibly send or read are declared; any other name is an
//! `Invalid field` ValueError, as 17.0 answers for a field that does not exist (API-NOTES §8).

use std::collections::HashMap;
use std::sync::OnceLock;

use serde_json::{Value, json};

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Kind {
    Char,
    Text,
    Int,
    Float,
    Bool,
    Date,
    Datetime,
    Selection(&'static [&'static str]),
    Many2one(&'static str),
    /// comodel, inverse many2one on the comodel. Never stored: read from the inverse index.
    One2many(&'static str, &'static str),
    Many2many(&'static str),
    /// `many2one_reference` (`ir.model.data.res_id`): a bare integer.
    Reference,
}

pub struct Field {
    pub name: &'static str,
    pub kind: Kind,
    pub required: bool,
    pub default: Value,
    pub indexed: bool,
    /// Computed by the fake (amounts, quantities, states); a client's value is ignored.
    pub computed: bool,
    pub string: &'static str,
}

pub struct Model {
    pub name: &'static str,
    pub description: &'static str,
    /// `_order`, as `field [asc|desc]` terms.
    pub order: &'static str,
    pub fields: Vec<Field>,
    by_name: HashMap<&'static str, usize>,
}

impl Model {
    pub fn field(&self, name: &str) -> Option<&Field> {
        self.by_name.get(name).map(|&i| &self.fields[i])
    }

    pub fn has_active(&self) -> bool {
        self.by_name.contains_key("active")
    }
}

pub struct Schema {
    pub models: HashMap<&'static str, Model>,
}

impl Schema {
    pub fn model(&self, name: &str) -> Option<&Model> {
        self.models.get(name)
    }
}

fn f(name: &'static str, kind: Kind) -> Field {
    let default = match kind {
        Kind::Int => json!(0),
        Kind::Float => json!(0.0),
        Kind::One2many(..) | Kind::Many2many(_) => json!([]),
        _ => Value::Bool(false),
    };
    Field {
        name,
        kind,
        required: false,
        default,
        indexed: false,
        computed: false,
        string: "",
    }
}

impl Field {
    fn req(mut self) -> Field {
        self.required = true;
        self
    }
    fn def(mut self, value: Value) -> Field {
        self.default = value;
        self
    }
    fn idx(mut self) -> Field {
        self.indexed = true;
        self
    }
    fn ro(mut self) -> Field {
        self.computed = true;
        self
    }
    fn label(mut self, string: &'static str) -> Field {
        self.string = string;
        self
    }

    /// The field's label: its `string`, else the name made readable as Odoo does by default.
    pub fn label_text(&self) -> String {
        if !self.string.is_empty() {
            return self.string.to_owned();
        }
        let base = self.name.strip_suffix("_id").unwrap_or(self.name);
        let mut words: Vec<String> = base
            .split('_')
            .map(|w| {
                let mut c = w.chars();
                match c.next() {
                    Some(first) => first.to_uppercase().chain(c).collect(),
                    None => String::new(),
                }
            })
            .collect();
        if words.is_empty() {
            words.push(self.name.to_owned());
        }
        words.join(" ")
    }
}

use Kind::*;

const MOVE_TYPES: &[&str] = &[
    "entry",
    "out_invoice",
    "out_refund",
    "in_invoice",
    "in_refund",
    "out_receipt",
    "in_receipt",
];
/// 17.0's `account.account.account_type` values the fake's chart uses (of 18).
const ACCOUNT_TYPES: &[&str] = &[
    "asset_receivable",
    "asset_cash",
    "asset_current",
    "liability_payable",
    "liability_current",
    "income",
    "expense",
];
const PRODUCT_TYPES: &[&str] = &["consu", "service", "product"];
const PICKING_STATES: &[&str] = &[
    "draft",
    "waiting",
    "confirmed",
    "assigned",
    "done",
    "cancel",
];
const MOVE_STATES: &[&str] = &[
    "draft",
    "waiting",
    "confirmed",
    "partially_available",
    "assigned",
    "done",
    "cancel",
];

fn product_fields() -> Vec<Field> {
    vec![
        f("name", Char).req().label("Name"),
        f("default_code", Char).idx().label("Internal Reference"),
        f("barcode", Char),
        f("list_price", Float).def(json!(1.0)),
        f("standard_price", Float),
        f("detailed_type", Selection(PRODUCT_TYPES)).def(json!("consu")),
        f("type", Selection(PRODUCT_TYPES)).def(json!("consu")).ro(),
        f("uom_id", Many2one("uom.uom")).def(json!(1)),
        f("uom_po_id", Many2one("uom.uom")).def(json!(1)),
        f("categ_id", Many2one("product.category")).def(json!(1)),
        f("purchase_ok", Bool).def(json!(true)),
        f("sale_ok", Bool).def(json!(true)),
        f("active", Bool).def(json!(true)),
        f("description", Text),
        f("description_purchase", Text),
        f("description_sale", Text),
        f("taxes_id", Many2many("account.tax")),
        f("supplier_taxes_id", Many2many("account.tax")),
        f("purchase_method", Selection(&["purchase", "receive"])).def(json!("receive")),
        f("invoice_policy", Selection(&["order", "delivery"])).def(json!("order")),
        f("tracking", Selection(&["serial", "lot", "none"])).def(json!("none")),
        f("weight", Float),
        f("volume", Float),
        f("company_id", Many2one("res.company")),
    ]
}

fn definitions() -> Vec<(&'static str, &'static str, &'static str, Vec<Field>)> {
    vec![
        (
            "ir.model.data",
            "Model Data",
            "module, model, name",
            vec![
                f("name", Char).req().idx().label("External Identifier"),
                f("module", Char).req().def(json!("")),
                f("model", Char).req().label("Model Name"),
                f("res_id", Reference).idx().label("Record ID"),
                f("noupdate", Bool),
                f("complete_name", Char).ro(),
                f("reference", Char).ro(),
            ],
        ),
        (
            "res.users",
            "User",
            "name, login",
            vec![
                f("name", Char).req(),
                f("login", Char).req(),
                f("partner_id", Many2one("res.partner")).req(),
                f("company_id", Many2one("res.company")),
                f("active", Bool).def(json!(true)),
            ],
        ),
        (
            "res.company",
            "Companies",
            "sequence, name",
            vec![
                f("name", Char).req(),
                f("partner_id", Many2one("res.partner")),
                f("currency_id", Many2one("res.currency")),
                f("account_sale_tax_id", Many2one("account.tax")),
                f("account_purchase_tax_id", Many2one("account.tax")),
            ],
        ),
        (
            "res.currency",
            "Currency",
            "active desc, name",
            vec![
                f("name", Char).req(),
                f("symbol", Char),
                f("active", Bool).def(json!(true)),
            ],
        ),
        (
            "res.country",
            "Country",
            "name",
            vec![f("name", Char).req(), f("code", Char).idx()],
        ),
        (
            "res.partner",
            "Contact",
            "name, id desc",
            vec![
                f("name", Char).idx(),
                f("ref", Char).idx().label("Reference"),
                f(
                    "type",
                    Selection(&["contact", "invoice", "delivery", "private", "other"]),
                )
                .def(json!("contact")),
                f("email", Char),
                f("phone", Char),
                f("mobile", Char),
                f("street", Char),
                f("street2", Char),
                f("city", Char),
                f("zip", Char),
                f("country_id", Many2one("res.country")),
                f("vat", Char),
                f("website", Char),
                f("function", Char),
                f("comment", Text),
                f("lang", Char),
                f("tz", Char),
                f("barcode", Char),
                f("company_name", Char),
                f("is_company", Bool),
                f("company_type", Selection(&["person", "company"])).ro(),
                f("parent_id", Many2one("res.partner")),
                f("child_ids", One2many("res.partner", "parent_id")),
                f("customer_rank", Int),
                f("supplier_rank", Int),
                f("active", Bool).def(json!(true)),
                f("company_id", Many2one("res.company")),
                f("user_id", Many2one("res.users")),
                f("property_payment_term_id", Many2one("account.payment.term")),
                f(
                    "property_supplier_payment_term_id",
                    Many2one("account.payment.term"),
                ),
            ],
        ),
        (
            "account.payment.term",
            "Payment Terms",
            "sequence, id",
            vec![
                f("name", Char).req(),
                f("note", Text),
                f("active", Bool).def(json!(true)),
            ],
        ),
        (
            "account.tax",
            "Tax",
            "sequence, id",
            vec![
                f("name", Char).req(),
                f("amount", Float),
                f(
                    "amount_type",
                    Selection(&["group", "fixed", "percent", "division"]),
                )
                .def(json!("percent")),
                f("type_tax_use", Selection(&["sale", "purchase", "none"])).def(json!("sale")),
                f("active", Bool).def(json!(true)),
                f("company_id", Many2one("res.company")).def(json!(1)),
            ],
        ),
        (
            "account.account",
            "Account",
            "code, company_id",
            vec![
                f("name", Char).req(),
                f("code", Char).req(),
                f("account_type", Selection(ACCOUNT_TYPES)).req(),
                f("reconcile", Bool),
                f("company_id", Many2one("res.company")).def(json!(1)),
            ],
        ),
        (
            "account.journal",
            "Journal",
            "sequence, type, code",
            vec![
                f("name", Char).req(),
                f("code", Char).req(),
                f(
                    "type",
                    Selection(&["sale", "purchase", "cash", "bank", "general"]),
                )
                .req(),
                f("active", Bool).def(json!(true)),
                f("company_id", Many2one("res.company")).def(json!(1)),
            ],
        ),
        (
            "uom.uom",
            "Product Unit of Measure",
            "factor DESC, id",
            vec![f("name", Char).req(), f("active", Bool).def(json!(true))],
        ),
        (
            "product.category",
            "Product Category",
            "complete_name",
            vec![
                f("name", Char).req(),
                f("complete_name", Char).ro(),
                f("parent_id", Many2one("product.category")),
            ],
        ),
        ("product.template", "Product", "priority desc, name", {
            let mut fields = product_fields();
            fields.push(f("product_variant_id", Many2one("product.product")).ro());
            fields.push(f(
                "product_variant_ids",
                One2many("product.product", "product_tmpl_id"),
            ));
            fields
        }),
        (
            "product.product",
            "Product Variant",
            "default_code, name, id",
            {
                let mut fields = product_fields();
                fields.push(f("product_tmpl_id", Many2one("product.template")).ro());
                fields.push(f("qty_available", Float).ro());
                fields.push(f("virtual_available", Float).ro());
                fields
            },
        ),
        (
            "stock.location",
            "Inventory Locations",
            "complete_name, id",
            vec![
                f("name", Char).req(),
                f("complete_name", Char).ro(),
                f(
                    "usage",
                    Selection(&[
                        "supplier",
                        "view",
                        "internal",
                        "customer",
                        "inventory",
                        "production",
                        "transit",
                    ]),
                )
                .def(json!("internal")),
                f("location_id", Many2one("stock.location")),
                f("active", Bool).def(json!(true)),
                f("company_id", Many2one("res.company")),
            ],
        ),
        (
            "stock.warehouse",
            "Warehouse",
            "sequence,id",
            vec![
                f("name", Char).req(),
                f("code", Char).req(),
                f("lot_stock_id", Many2one("stock.location")),
                f("in_type_id", Many2one("stock.picking.type")),
                f("out_type_id", Many2one("stock.picking.type")),
                f("active", Bool).def(json!(true)),
                f("company_id", Many2one("res.company")).def(json!(1)),
            ],
        ),
        (
            "stock.picking.type",
            "Picking Type",
            "sequence, id",
            vec![
                f("name", Char).req(),
                f("code", Selection(&["incoming", "outgoing", "internal"])).req(),
                f("sequence_code", Char).req(),
                f("warehouse_id", Many2one("stock.warehouse")),
                f("default_location_src_id", Many2one("stock.location")),
                f("default_location_dest_id", Many2one("stock.location")),
                f("create_backorder", Selection(&["ask", "always", "never"])).def(json!("ask")),
                f("active", Bool).def(json!(true)),
                f("company_id", Many2one("res.company")).def(json!(1)),
            ],
        ),
        (
            "stock.warehouse.orderpoint",
            "Minimum Inventory Rule",
            "location_id,company_id,id",
            vec![
                f("name", Char).req(),
                f("product_id", Many2one("product.product")).req().idx(),
                f("warehouse_id", Many2one("stock.warehouse")).req(),
                f("location_id", Many2one("stock.location")).req(),
                f("product_min_qty", Float),
                f("product_max_qty", Float),
                f("qty_multiple", Float).def(json!(1.0)),
                f("trigger", Selection(&["auto", "manual"])).def(json!("auto")),
                f("active", Bool).def(json!(true)),
                f("company_id", Many2one("res.company")).def(json!(1)),
                f("product_uom", Many2one("uom.uom")).ro(),
                f("qty_on_hand", Float).ro(),
                f("qty_forecast", Float).ro(),
                f("qty_to_order", Float).ro(),
            ],
        ),
        (
            "stock.quant",
            "Quants",
            "id",
            vec![
                f("product_id", Many2one("product.product")).req(),
                f("location_id", Many2one("stock.location")).req(),
                f("quantity", Float).ro(),
                f("reserved_quantity", Float).ro(),
                f("inventory_quantity", Float),
                f("inventory_quantity_set", Bool),
                f("company_id", Many2one("res.company")).def(json!(1)),
            ],
        ),
        (
            "stock.picking",
            "Transfer",
            "priority desc, scheduled_date asc, id desc",
            vec![
                f("name", Char).def(json!("/")).idx(),
                f("origin", Char).idx().label("Source Document"),
                f("partner_id", Many2one("res.partner")),
                f("picking_type_id", Many2one("stock.picking.type"))
                    .req()
                    .label("Operation Type"),
                f(
                    "picking_type_code",
                    Selection(&["incoming", "outgoing", "internal"]),
                )
                .ro(),
                f("location_id", Many2one("stock.location"))
                    .req()
                    .label("Source Location"),
                f("location_dest_id", Many2one("stock.location"))
                    .req()
                    .label("Destination Location"),
                f("state", Selection(PICKING_STATES))
                    .def(json!("draft"))
                    .ro(),
                f("move_ids", One2many("stock.move", "picking_id")),
                f(
                    "move_ids_without_package",
                    One2many("stock.move", "picking_id"),
                ),
                f("scheduled_date", Datetime),
                f("date_done", Datetime).ro(),
                f("purchase_id", Many2one("purchase.order")).idx(),
                f("backorder_id", Many2one("stock.picking")).idx(),
                f("backorder_ids", One2many("stock.picking", "backorder_id")),
                f("move_type", Selection(&["direct", "one"])).def(json!("direct")),
                f("priority", Selection(&["0", "1"])).def(json!("0")),
                f("note", Text),
                f("user_id", Many2one("res.users")),
                f("company_id", Many2one("res.company")).def(json!(1)),
            ],
        ),
        (
            "stock.move",
            "Stock Move",
            "sequence, id",
            vec![
                f("name", Char).req().label("Description"),
                f("reference", Char).ro(),
                f("sequence", Int).def(json!(10)),
                f("product_id", Many2one("product.product"))
                    .req()
                    .idx()
                    .label("Product"),
                f("product_uom_qty", Float).req().label("Demand"),
                f("product_qty", Float).ro(),
                f("product_uom", Many2one("uom.uom")).req().label("UoM"),
                f("quantity", Float),
                f("picked", Bool),
                f("location_id", Many2one("stock.location"))
                    .req()
                    .label("Source Location"),
                f("location_dest_id", Many2one("stock.location"))
                    .req()
                    .label("Destination Location"),
                f("picking_id", Many2one("stock.picking")).idx(),
                f("picking_type_id", Many2one("stock.picking.type")),
                f("purchase_line_id", Many2one("purchase.order.line")).idx(),
                f("partner_id", Many2one("res.partner")),
                f("state", Selection(MOVE_STATES))
                    .def(json!("draft"))
                    .ro()
                    .idx(),
                f("origin", Char),
                f("date", Datetime),
                f("company_id", Many2one("res.company")).def(json!(1)),
            ],
        ),
        (
            "stock.backorder.confirmation",
            "Backorder Confirmation",
            "id",
            vec![
                f("pick_ids", Many2many("stock.picking")),
                f("show_transfers", Bool),
            ],
        ),
        (
            "purchase.order",
            "Purchase Order",
            "priority desc, id desc",
            vec![
                f("name", Char)
                    .req()
                    .def(json!("New"))
                    .idx()
                    .label("Order Reference"),
                f("partner_id", Many2one("res.partner"))
                    .req()
                    .label("Vendor"),
                f("partner_ref", Char).idx().label("Vendor Reference"),
                f("origin", Char).idx().label("Source Document"),
                f("date_order", Datetime),
                f("date_approve", Datetime).ro(),
                f("date_planned", Datetime),
                f(
                    "state",
                    Selection(&["draft", "sent", "to approve", "purchase", "done", "cancel"]),
                )
                .def(json!("draft"))
                .ro(),
                f("order_line", One2many("purchase.order.line", "order_id")),
                f("picking_ids", One2many("stock.picking", "purchase_id")).ro(),
                f("invoice_ids", Many2many("account.move")).ro(),
                f("incoming_picking_count", Int).ro(),
                f("invoice_count", Int).ro(),
                f("amount_untaxed", Float).ro(),
                f("amount_tax", Float).ro(),
                f("amount_total", Float).ro(),
                f(
                    "invoice_status",
                    Selection(&["no", "to invoice", "invoiced"]),
                )
                .def(json!("no"))
                .ro(),
                f("receipt_status", Selection(&["pending", "partial", "full"])).ro(),
                f("currency_id", Many2one("res.currency")).def(json!(2)),
                f("company_id", Many2one("res.company")).def(json!(1)),
                f("picking_type_id", Many2one("stock.picking.type")).def(json!(1)),
                f("payment_term_id", Many2one("account.payment.term")),
                f("user_id", Many2one("res.users")),
                f("notes", Text),
                f("priority", Selection(&["0", "1"])).def(json!("0")),
            ],
        ),
        (
            "purchase.order.line",
            "Purchase Order Line",
            "order_id, sequence, id",
            vec![
                f("order_id", Many2one("purchase.order")).req().idx(),
                f("name", Char).req().label("Description"),
                f("sequence", Int).def(json!(10)),
                f("display_type", Selection(&["line_section", "line_note"])),
                f("product_id", Many2one("product.product")),
                f("product_qty", Float)
                    .req()
                    .def(json!(1.0))
                    .label("Quantity"),
                f("product_uom_qty", Float).ro(),
                f("product_uom", Many2one("uom.uom")),
                f("price_unit", Float),
                f("date_planned", Datetime),
                f("taxes_id", Many2many("account.tax")),
                f("qty_received", Float).ro(),
                f("qty_invoiced", Float).ro(),
                f("qty_to_invoice", Float).ro(),
                f("price_subtotal", Float).ro(),
                f("price_tax", Float).ro(),
                f("price_total", Float).ro(),
                f("move_ids", One2many("stock.move", "purchase_line_id")),
                f(
                    "invoice_lines",
                    One2many("account.move.line", "purchase_line_id"),
                ),
                f("partner_id", Many2one("res.partner")).ro(),
                f(
                    "state",
                    Selection(&["draft", "sent", "to approve", "purchase", "done", "cancel"]),
                )
                .ro(),
                f("company_id", Many2one("res.company")).def(json!(1)),
                f("currency_id", Many2one("res.currency")).def(json!(2)),
            ],
        ),
        (
            "account.move",
            "Journal Entry",
            "date desc, name desc, id desc",
            vec![
                f("name", Char).def(json!("/")).idx().label("Number"),
                f("ref", Char).idx().label("Reference"),
                f("move_type", Selection(MOVE_TYPES))
                    .req()
                    .def(json!("entry")),
                f("partner_id", Many2one("res.partner")).idx(),
                f("invoice_date", Date),
                f("date", Date),
                f("invoice_date_due", Date),
                f("state", Selection(&["draft", "posted", "cancel"]))
                    .def(json!("draft"))
                    .ro(),
                f(
                    "payment_state",
                    Selection(&[
                        "not_paid",
                        "in_payment",
                        "paid",
                        "partial",
                        "reversed",
                        "invoicing_legacy",
                    ]),
                )
                .def(json!("not_paid"))
                .ro(),
                f("journal_id", Many2one("account.journal")),
                f("currency_id", Many2one("res.currency")).def(json!(2)),
                f("company_id", Many2one("res.company")).def(json!(1)),
                f("invoice_line_ids", One2many("account.move.line", "move_id")),
                f("line_ids", One2many("account.move.line", "move_id")),
                f("amount_untaxed", Float).ro(),
                f("amount_tax", Float).ro(),
                f("amount_total", Float).ro(),
                f("amount_residual", Float).ro(),
                f("invoice_origin", Char),
                f("payment_reference", Char),
                f("narration", Text),
                f("invoice_payment_term_id", Many2one("account.payment.term")),
                f("invoice_user_id", Many2one("res.users")),
                f("purchase_id", Many2one("purchase.order")),
            ],
        ),
        (
            "account.move.line",
            "Journal Item",
            "date desc, move_name desc, id",
            vec![
                f("move_id", Many2one("account.move"))
                    .req()
                    .idx()
                    .label("Journal Entry"),
                f("name", Char).label("Label"),
                f("sequence", Int).def(json!(10)),
                f(
                    "display_type",
                    Selection(&[
                        "product",
                        "cogs",
                        "tax",
                        "discount",
                        "rounding",
                        "payment_term",
                        "line_section",
                        "line_note",
                        "epd",
                    ]),
                )
                .def(json!("product")),
                f("product_id", Many2one("product.product")),
                f("product_uom_id", Many2one("uom.uom")),
                f("quantity", Float).def(json!(1.0)),
                f("price_unit", Float),
                f("discount", Float),
                f("tax_ids", Many2many("account.tax")),
                f("price_subtotal", Float).ro(),
                f("price_total", Float).ro(),
                f("purchase_line_id", Many2one("purchase.order.line")).idx(),
                f("partner_id", Many2one("res.partner")).ro(),
                f("account_id", Many2one("account.account")),
                f("account_type", Selection(ACCOUNT_TYPES))
                    .ro()
                    .label("Internal Type"),
                f("balance", Float).ro(),
                f("amount_residual", Float).ro().label("Residual Amount"),
                f("reconciled", Bool).ro(),
                f("payment_id", Many2one("account.payment"))
                    .ro()
                    .idx()
                    .label("Originator Payment"),
            ],
        ),
        (
            "account.payment",
            "Payments",
            "date desc, name desc",
            vec![
                f("name", Char).def(json!("/")).ro(),
                f("partner_id", Many2one("res.partner")),
                f("amount", Float),
                f("date", Date),
                f("ref", Char).idx().label("Memo"),
                f("payment_type", Selection(&["outbound", "inbound"]))
                    .req()
                    .def(json!("inbound")),
                f("partner_type", Selection(&["customer", "supplier"]))
                    .req()
                    .def(json!("customer")),
                f("state", Selection(&["draft", "posted", "cancel"]))
                    .def(json!("draft"))
                    .ro(),
                f("journal_id", Many2one("account.journal")).def(json!(6)),
                f("currency_id", Many2one("res.currency")).def(json!(2)),
                f("company_id", Many2one("res.company")).def(json!(1)),
                f("reconciled_invoice_ids", Many2many("account.move")).ro(),
                f("is_reconciled", Bool).ro(),
                f("move_id", Many2one("account.move"))
                    .ro()
                    .label("Journal Entry"),
            ],
        ),
        (
            "account.payment.register",
            "Register Payment",
            "id",
            vec![
                f("amount", Float),
                f("payment_date", Date),
                f("communication", Char).label("Memo"),
                f("journal_id", Many2one("account.journal")),
                f("group_payment", Bool),
                f(
                    "payment_difference_handling",
                    Selection(&["open", "reconcile"]),
                )
                .def(json!("open")),
                f("partner_id", Many2one("res.partner")).ro(),
                f("currency_id", Many2one("res.currency")).ro(),
                f("line_ids", Many2many("account.move.line")).ro(),
                f("payment_type", Selection(&["outbound", "inbound"])).ro(),
                f("partner_type", Selection(&["customer", "supplier"])).ro(),
                f("can_edit_wizard", Bool).ro(),
                f("source_amount", Float).ro(),
            ],
        ),
    ]
}

fn common_fields() -> Vec<Field> {
    vec![
        f("id", Int).ro(),
        f("display_name", Char).ro(),
        f("create_date", Datetime).ro(),
        f("write_date", Datetime).ro(),
        f("create_uid", Many2one("res.users")).ro(),
        f("write_uid", Many2one("res.users")).ro(),
    ]
}

/// The schema, built once per test process.
pub fn schema() -> &'static Schema {
    static SCHEMA: OnceLock<Schema> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let mut models = HashMap::new();
        for (name, description, order, mut fields) in definitions() {
            fields.extend(common_fields());
            let by_name = fields
                .iter()
                .enumerate()
                .map(|(i, f)| (f.name, i))
                .collect();
            models.insert(
                name,
                Model {
                    name,
                    description,
                    order,
                    fields,
                    by_name,
                },
            );
        }
        Schema { models }
    })
}

/// The records a fresh 17.0 database with `account`, `purchase` and `stock` holds (ids as a
/// fresh install gives them where known; instance-specific anyway), and their xmlids.
pub struct Seed {
    pub model: &'static str,
    pub id: i64,
    pub values: Value,
    pub xmlid: Option<(&'static str, &'static str)>,
}

fn seed(
    model: &'static str,
    id: i64,
    xmlid: Option<(&'static str, &'static str)>,
    values: Value,
) -> Seed {
    Seed {
        model,
        id,
        values,
        xmlid,
    }
}

pub fn seeds() -> Vec<Seed> {
    vec![
        seed(
            "res.currency",
            1,
            Some(("base", "EUR")),
            json!({"name":"EUR","symbol":"€"}),
        ),
        seed(
            "res.currency",
            2,
            Some(("base", "USD")),
            json!({"name":"USD","symbol":"$"}),
        ),
        seed(
            "res.partner",
            1,
            Some(("base", "main_partner")),
            json!({"name":"YourCompany","is_company":true,"company_id":1}),
        ),
        seed(
            "res.partner",
            3,
            Some(("base", "partner_admin")),
            json!({"name":"Careflow Integration","email":"integration@careflow.test","company_id":1}),
        ),
        seed(
            "res.company",
            1,
            Some(("base", "main_company")),
            json!({"name":"YourCompany","partner_id":1,"currency_id":2,
                   "account_sale_tax_id":1,"account_purchase_tax_id":2}),
        ),
        seed(
            "res.users",
            2,
            Some(("base", "user_admin")),
            json!({"name":"Careflow Integration","login":super::LOGIN,"partner_id":3,"company_id":1}),
        ),
        seed(
            "res.country",
            21,
            Some(("base", "be")),
            json!({"name":"Belgium","code":"BE"}),
        ),
        seed(
            "res.country",
            38,
            Some(("base", "ca")),
            json!({"name":"Canada","code":"CA"}),
        ),
        seed(
            "res.country",
            57,
            Some(("base", "de")),
            json!({"name":"Germany","code":"DE"}),
        ),
        seed(
            "res.country",
            75,
            Some(("base", "fr")),
            json!({"name":"France","code":"FR"}),
        ),
        seed(
            "res.country",
            231,
            Some(("base", "uk")),
            json!({"name":"United Kingdom","code":"GB"}),
        ),
        seed(
            "res.country",
            233,
            Some(("base", "us")),
            json!({"name":"United States","code":"US"}),
        ),
        seed(
            "uom.uom",
            1,
            Some(("uom", "product_uom_unit")),
            json!({"name":"Units"}),
        ),
        seed(
            "uom.uom",
            2,
            Some(("uom", "product_uom_dozen")),
            json!({"name":"Dozens"}),
        ),
        seed(
            "product.category",
            1,
            Some(("product", "product_category_all")),
            json!({"name":"All"}),
        ),
        seed(
            "account.tax",
            1,
            None,
            json!({"name":"15%","amount":15.0,"type_tax_use":"sale"}),
        ),
        seed(
            "account.tax",
            2,
            None,
            json!({"name":"15%","amount":15.0,"type_tax_use":"purchase"}),
        ),
        seed(
            "account.account",
            1,
            None,
            json!({"name":"Account Receivable","code":"121000","account_type":"asset_receivable","reconcile":true}),
        ),
        seed(
            "account.account",
            2,
            None,
            json!({"name":"Account Payable","code":"211000","account_type":"liability_payable","reconcile":true}),
        ),
        seed(
            "account.journal",
            1,
            None,
            json!({"name":"Customer Invoices","code":"INV","type":"sale"}),
        ),
        seed(
            "account.journal",
            2,
            None,
            json!({"name":"Vendor Bills","code":"BILL","type":"purchase"}),
        ),
        seed(
            "account.journal",
            3,
            None,
            json!({"name":"Miscellaneous Operations","code":"MISC","type":"general"}),
        ),
        seed(
            "account.journal",
            6,
            None,
            json!({"name":"Bank","code":"BNK1","type":"bank"}),
        ),
        seed(
            "account.journal",
            7,
            None,
            json!({"name":"Cash","code":"CSH1","type":"cash"}),
        ),
        seed(
            "account.payment.term",
            1,
            Some(("account", "account_payment_term_immediate")),
            json!({"name":"Immediate Payment"}),
        ),
        seed(
            "account.payment.term",
            2,
            Some(("account", "account_payment_term_15days")),
            json!({"name":"15 Days"}),
        ),
        seed(
            "account.payment.term",
            3,
            Some(("account", "account_payment_term_21days")),
            json!({"name":"21 Days"}),
        ),
        seed(
            "account.payment.term",
            4,
            Some(("account", "account_payment_term_30days")),
            json!({"name":"30 Days"}),
        ),
        seed(
            "account.payment.term",
            5,
            Some(("account", "account_payment_term_45days")),
            json!({"name":"45 Days"}),
        ),
        seed(
            "account.payment.term",
            6,
            Some(("account", "account_payment_term_2months")),
            json!({"name":"2 Months"}),
        ),
        seed(
            "account.payment.term",
            7,
            Some(("account", "account_payment_term_end_following_month")),
            json!({"name":"End of Following Month"}),
        ),
        seed(
            "stock.location",
            1,
            Some(("stock", "stock_location_locations")),
            json!({"name":"Physical Locations","usage":"view"}),
        ),
        seed(
            "stock.location",
            2,
            Some(("stock", "stock_location_locations_partner")),
            json!({"name":"Partners","usage":"view"}),
        ),
        seed(
            "stock.location",
            3,
            Some(("stock", "stock_location_locations_virtual")),
            json!({"name":"Virtual Locations","usage":"view"}),
        ),
        seed(
            "stock.location",
            4,
            Some(("stock", "stock_location_suppliers")),
            json!({"name":"Vendors","usage":"supplier","location_id":2}),
        ),
        seed(
            "stock.location",
            5,
            Some(("stock", "stock_location_customers")),
            json!({"name":"Customers","usage":"customer","location_id":2}),
        ),
        seed(
            "stock.location",
            7,
            None,
            json!({"name":"WH","usage":"view","location_id":1,"company_id":1}),
        ),
        seed(
            "stock.location",
            8,
            Some(("stock", "stock_location_stock")),
            json!({"name":"Stock","usage":"internal","location_id":7,"company_id":1}),
        ),
        seed(
            "stock.location",
            14,
            None,
            json!({"name":"Inventory adjustment","usage":"inventory","location_id":3,"company_id":1}),
        ),
        seed(
            "stock.picking.type",
            1,
            Some(("stock", "picking_type_in")),
            json!({"name":"Receipts","code":"incoming","sequence_code":"IN","warehouse_id":1,
                   "default_location_src_id":4,"default_location_dest_id":8}),
        ),
        seed(
            "stock.picking.type",
            2,
            Some(("stock", "picking_type_out")),
            json!({"name":"Delivery Orders","code":"outgoing","sequence_code":"OUT","warehouse_id":1,
                   "default_location_src_id":8,"default_location_dest_id":5}),
        ),
        seed(
            "stock.warehouse",
            1,
            Some(("stock", "warehouse0")),
            json!({"name":"YourCompany","code":"WH","lot_stock_id":8,"in_type_id":1,"out_type_id":2}),
        ),
    ]
}

/// The id the first record a client creates gets, per model: past the seeds, and different per
/// model so an id of one model used for another rarely finds a record.
pub fn first_id(model: &str) -> i64 {
    match model {
        "ir.model.data" => 4000,
        "res.partner" => 7,
        "product.product" => 11,
        "product.template" => 9,
        "account.move" => 301,
        "account.move.line" => 1201,
        "account.payment" => 51,
        "purchase.order" => 21,
        "purchase.order.line" => 61,
        "stock.picking" => 15,
        "stock.move" => 131,
        "stock.warehouse.orderpoint" => 81,
        "stock.quant" => 88,
        _ => 100,
    }
}
