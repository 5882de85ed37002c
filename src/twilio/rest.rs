//! TEMPORARY stand-in for the foundation's Twilio REST shapes (replaced by main's file at merge).

#[derive(Debug, Clone, PartialEq)]
pub enum CallUpdate {
    Hangup,
    Twiml(String),
    Redirect { url: String, method: String },
}
