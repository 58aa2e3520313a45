//! Delivery status notifications (bounces), built with mail-builder. (Placeholder of the lead: helper T
//! writes it; effects.rs's `bounce` then calls it.)
